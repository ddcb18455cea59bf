"""BatchNorm after each hidden Linear/Conv, and the BatchNorm that follows a Linear."""

from __future__ import annotations

from collections import Counter

import torch
from torch import nn

from ..errors import RemedyNotApplicable
from ._plan import REPLACE_LOOP, Change, Plan, counted
from ._tree import LAYER_TYPES, is_torch_composite, kind, own_modules, set_module

# The common base of BatchNorm1d/2d/3d, SyncBatchNorm and the lazy ones.
_BatchNorm = nn.modules.batchnorm._BatchNorm
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class FeatureBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over the last dimension: follows a Linear on (N, F) and (N, T, F) inputs."""

    # Pickles name the class by its public path, which stays put when private modules move.
    __module__ = "gradwidget.remedies"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # nn.BatchNorm1d normalises dim 1, which is time, not features, for (N, T, F).
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def plan_batchnorm(model: nn.Module) -> Plan:
    """Plan a BatchNorm after each hidden layer of ``model`` (a copy, changed by ``build``)."""
    present = [name for name, module in model.named_modules() if isinstance(module, _BatchNorm)]
    if present:
        raise RemedyNotApplicable(
            f"This model already has BatchNorm ({', '.join(present[:3])}); adding more would "
            "normalise twice. Train it as it is, or remove those layers first."
        )
    layers = [(name, m) for name, m in own_modules(model) if isinstance(m, LAYER_TYPES)]
    hidden = layers[:-1]  # the output layer (last registered) keeps its raw scale
    if not hidden:
        raise RemedyNotApplicable(
            "This model has no hidden Linear or Conv layer to put BatchNorm after (the output "
            "layer gets none, and layers inside torch's own modules are left alone)."
        )
    groups = Counter((_norm_dims(layer), kind(layer)) for _, layer in hidden)
    summary = ", ".join(
        f"BatchNorm{dims}d after {counted([name] * n, ' layer')}"
        for (dims, name), n in groups.items()
    )
    pairs = "".join(
        f'    ("{name}", nn.BatchNorm{_norm_dims(m)}d({_features(m)})),\n' for name, m in hidden
    )
    code = "import torch.nn as nn\n\nfor name, norm in [\n" + pairs + "]:\n"
    code += REPLACE_LOOP.format(new="nn.Sequential(model.get_submodule(name), norm)")

    def build() -> nn.Module:
        for name, layer in hidden:
            set_module(model, name, nn.Sequential(layer, _norm_for(layer)))
        return model

    summary += " (not the output layer)" + _skipped_note(model)
    return Plan(Change("batchnorm", summary, code), build)


def _norm_dims(layer: nn.Module) -> int:
    return 1 if isinstance(layer, nn.Linear) else len(layer.kernel_size)


def _features(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _norm_for(layer: nn.Module) -> nn.Module:
    dims = _norm_dims(layer)
    norm_type = FeatureBatchNorm1d if isinstance(layer, nn.Linear) else _BATCHNORMS[dims - 1]
    return norm_type(_features(layer)).to(device=layer.weight.device, dtype=layer.weight.dtype)


def _skipped_note(model: nn.Module) -> str:
    """Mention layers inside torch's composites (attention, LSTM), which get no BatchNorm."""
    composites = [m for _, m in own_modules(model) if is_torch_composite(m)]
    owners, layers = [], []
    for composite in composites:
        inside = [m for m in list(composite.modules())[1:] if isinstance(m, LAYER_TYPES)]
        owners += [type(composite).__name__] if inside else []
        layers += inside
    if not layers:
        return ""
    return (
        f"; {counted(map(kind, layers), ' layer')} inside {', '.join(dict.fromkeys(owners))} "
        "left as they are (torch reads their weights directly)"
    )
