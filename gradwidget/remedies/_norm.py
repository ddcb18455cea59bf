"""BatchNorm or LayerNorm after each hidden Linear/Conv, and the BatchNorm that follows a Linear."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import RemedyNotApplicable
from ._plan import REPLACE_LOOP, Change, Plan, counted, listed
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


@dataclass(frozen=True)
class _NormKind:
    """BatchNorm or LayerNorm: which existing norms clash with it, and what it puts in."""

    label: str
    clashes: tuple[type[nn.Module], ...]
    make: Callable[[nn.Module], nn.Module]  # the norm for a layer
    code: Callable[[nn.Module], str]  # the same, as pasted code


def _batchnorm_for(layer: nn.Module) -> nn.Module:
    dims = _norm_dims(layer)
    return (FeatureBatchNorm1d if dims == 1 and _is_linear(layer) else _BATCHNORMS[dims - 1])(
        _features(layer)
    )


def _layernorm_for(layer: nn.Module) -> nn.Module:
    # GroupNorm with one group is LayerNorm over (channels, positions): the conv equivalent.
    if _is_linear(layer):
        return nn.LayerNorm(layer.out_features)
    return nn.GroupNorm(1, layer.out_channels)


_KINDS = {
    "batchnorm": _NormKind(
        "BatchNorm",
        (_BatchNorm,),
        _batchnorm_for,
        lambda m: f"nn.BatchNorm{_norm_dims(m)}d({_features(m)})",
    ),
    "layernorm": _NormKind(
        "LayerNorm",
        (_BatchNorm, nn.LayerNorm, nn.GroupNorm),
        _layernorm_for,
        lambda m: (
            f"nn.LayerNorm({m.out_features})"
            if _is_linear(m)
            else f"nn.GroupNorm(1, {m.out_channels})"
        ),
    ),
}


def plan_norm(model: nn.Module, name: str, batch_size: int) -> Plan:
    """Plan a norm after each hidden layer of ``model`` (a copy, changed by ``build``)."""
    norm = _KINDS[name]
    _refuse_clashes(model, norm)
    if name == "batchnorm" and batch_size == 1:
        raise RemedyNotApplicable(
            "The batch size is 1: BatchNorm has no batch to take statistics over (and cannot "
            "train on one row). LayerNorm normalises each row on its own: use it instead."
        )
    layers = [(name, m) for name, m in own_modules(model) if isinstance(m, LAYER_TYPES)]
    hidden = layers[:-1]  # the output layer (last registered) keeps its raw scale
    if not hidden:
        raise RemedyNotApplicable(
            f"This model has no hidden Linear or Conv layer to put {norm.label} after (the "
            "output layer gets none, and layers inside torch's own modules are left alone)."
        )
    groups = Counter((type(norm.make(layer)).__name__, kind(layer)) for _, layer in hidden)
    summary = ", ".join(
        f"{_public(label)} after {counted([kind_] * n, ' layer')}"
        for (label, kind_), n in groups.items()
    )
    pairs = "".join(f'    ("{name}", {norm.code(m)}),\n' for name, m in hidden)
    code = "import torch.nn as nn\n\nfor name, norm in [\n" + pairs + "]:\n"
    code += REPLACE_LOOP.format(new="nn.Sequential(model.get_submodule(name), norm)")

    def build() -> nn.Module:
        for slot, layer in hidden:
            fresh = norm.make(layer).to(device=layer.weight.device, dtype=layer.weight.dtype)
            set_module(model, slot, nn.Sequential(layer, fresh))
        return model

    summary += " (not the output layer)" + _skipped_note(model)
    return Plan(Change(name, summary, code), build)


def _refuse_clashes(model: nn.Module, norm: _NormKind) -> None:
    present = [name for name, m in own_modules(model) if isinstance(m, norm.clashes)]
    if present:
        kinds = listed(_public(type(model.get_submodule(name)).__name__) for name in present)
        raise RemedyNotApplicable(
            f"This model already has {kinds} ({', '.join(present[:3])}); adding "
            f"{norm.label} would normalise twice. Train it as it is, or remove those layers "
            "first."
        )


def _public(label: str) -> str:
    """FeatureBatchNorm1d is BatchNorm1d over features: say BatchNorm1d to users."""
    return "BatchNorm1d" if label == FeatureBatchNorm1d.__name__ else label


def _is_linear(layer: nn.Module) -> bool:
    return isinstance(layer, nn.Linear)


def _norm_dims(layer: nn.Module) -> int:
    return 1 if _is_linear(layer) else len(layer.kernel_size)


def _features(layer: nn.Module) -> int:
    return layer.out_features if _is_linear(layer) else layer.out_channels


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
