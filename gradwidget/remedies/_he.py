"""He (Kaiming-normal) initialisation of every Linear/Conv layer, from a seeded generator."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import RemedyNotApplicable
from ._plan import Change, Plan, counted
from ._tree import LAYER_TYPES, kind


def plan_he_init(model: nn.Module, seed: int) -> Plan:
    """Plan He init on every Linear/Conv of ``model`` (a copy, changed by ``build``)."""
    layers = [module for module in model.modules() if isinstance(module, LAYER_TYPES)]
    if not layers:
        raise RemedyNotApplicable(
            "This model has no Linear or Conv layer, so He initialisation has nothing to set."
        )
    kinds = sorted({kind(layer) for layer in layers})
    summary = f"He (Kaiming-normal) init on {counted(map(kind, layers), ' layer')}"
    code = (
        "import torch\nimport torch.nn as nn\n\n"
        f"generator = torch.Generator().manual_seed({seed})\n"
        "for module in model.modules():\n"
        f"    if isinstance(module, ({''.join(f'nn.{name}, ' for name in kinds).strip()})):\n"
        "        nn.init.kaiming_normal_(\n"
        '            module.weight, mode="fan_in", nonlinearity="relu", generator=generator\n'
        "        )\n"
        "        if module.bias is not None:\n"
        "            nn.init.zeros_(module.bias)\n"
    )

    def build() -> nn.Module:
        generator = torch.Generator().manual_seed(seed)
        for layer in layers:
            _kaiming_normal(layer.weight, generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        return model

    return Plan(Change("he_init", summary + ", biases zeroed", code), build)


def _kaiming_normal(weight: torch.Tensor, generator: torch.Generator) -> None:
    # Drawn on the CPU, then copied: a CPU generator cannot fill a CUDA tensor directly.
    fresh = torch.empty(weight.shape)
    nn.init.kaiming_normal_(fresh, mode="fan_in", nonlinearity="relu", generator=generator)
    with torch.no_grad():
        weight.copy_(fresh)
