"""Re-initialise every Linear/Conv layer (He or Glorot) from a seeded generator."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from ..errors import RemedyNotApplicable
from ._plan import Change, Plan, counted
from ._tree import LAYER_TYPES, kind


@dataclass(frozen=True)
class _Scheme:
    """An initialisation: its name for users, the torch call, and the call as pasted code."""

    label: str
    fill: Callable[..., torch.Tensor]  # fill(tensor, generator=...)
    code: str


SCHEMES = {
    "he_init": _Scheme(
        "He (Kaiming-normal)",
        partial(nn.init.kaiming_normal_, mode="fan_in", nonlinearity="relu"),
        'nn.init.kaiming_normal_(\n            module.weight, mode="fan_in", nonlinearity="relu", '
        "generator=generator\n        )",
    ),
    # Glorot & Bengio (2010): variance 2 / (fan_in + fan_out), made for tanh/sigmoid nets.
    "xavier_init": _Scheme(
        "Xavier (Glorot-uniform)",
        nn.init.xavier_uniform_,
        "nn.init.xavier_uniform_(module.weight, generator=generator)",
    ),
}


def plan_init(model: nn.Module, name: str, seed: int) -> Plan:
    """Plan initialisation ``name`` on every Linear/Conv of ``model`` (a copy)."""
    scheme = SCHEMES[name]
    layers = [module for module in model.modules() if isinstance(module, LAYER_TYPES)]
    if not layers:
        raise RemedyNotApplicable(
            f"This model has no Linear or Conv layer, so {scheme.label.split()[0]} "
            "initialisation has nothing to set."
        )
    kinds = sorted({kind(layer) for layer in layers})
    summary = f"{scheme.label} init on {counted(map(kind, layers), ' layer')}"
    code = (
        "import torch\nimport torch.nn as nn\n\n"
        f"generator = torch.Generator().manual_seed({seed})\n"
        "for module in model.modules():\n"
        f"    if isinstance(module, ({''.join(f'nn.{name}, ' for name in kinds).strip()})):\n"
        f"        {scheme.code}\n"
        "        if module.bias is not None:\n"
        "            nn.init.zeros_(module.bias)\n"
    )

    def build() -> nn.Module:
        generator = torch.Generator().manual_seed(seed)
        for layer in layers:
            _fill(layer.weight, scheme, generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        return model

    return Plan(Change(name, summary + ", biases zeroed", code), build)


def _fill(weight: torch.Tensor, scheme: _Scheme, generator: torch.Generator) -> None:
    # Drawn on the CPU, then copied: a CPU generator cannot fill a CUDA tensor directly.
    fresh = torch.empty(weight.shape)
    scheme.fill(fresh, generator=generator)
    with torch.no_grad():
        weight.copy_(fresh)
