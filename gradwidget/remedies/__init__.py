"""Remedies for gradient problems: new models (``nn.Module -> nn.Module``) or new settings.

Every remedy is one record of :data:`REGISTRY` (name, label, group, order, target, plan).
Model remedies work on a deep copy: the model passed in, its parameters and its hooks are never
changed. Forward/backward hooks (a Recorder's, or yours) are not carried into the copy, so the
copy can be recorded on its own; torch's own hook objects (old-style weight/spectral norm) are.
Training remedies (``clip_grad``, ``lower_lr``, ``raise_lr``, ``adam``) return new
:class:`~gradwidget.TrainConfig` settings instead.

Layers inside torch's own composite modules (``nn.LSTM``, ``nn.MultiheadAttention``,
``nn.TransformerEncoderLayer`` ...) are left alone: torch reads their weights directly, so
wrapping or swapping them would break those modules or be bypassed by their fast paths.
"""

from __future__ import annotations

from torch import nn

from ._activation import TARGETS
from ._apply import apply_remedies, apply_settings, check, check_all, split, suggest
from ._norm import FeatureBatchNorm1d
from ._plan import Change
from ._registry import REGISTRY, REMEDIES, Group, Remedy, Target
from ._residual import Residual

__all__ = [
    "LABELS",
    "REGISTRY",
    "REMEDIES",
    "REMEDY_NAMES",
    "SETTINGS_NAMES",
    "Change",
    "FeatureBatchNorm1d",
    "Group",
    "Remedy",
    "Residual",
    "Target",
    "add_batchnorm",
    "add_layernorm",
    "add_residual",
    "apply_remedies",
    "apply_settings",
    "check",
    "check_all",
    "he_init",
    "split",
    "suggest",
    "use_activation",
    "use_relu",
    "xavier_init",
]

REMEDY_NAMES: tuple[str, ...] = tuple(r.name for r in REGISTRY if r.target is Target.MODEL)
"""The model remedies, in display order: what ``apply_remedies`` takes."""
SETTINGS_NAMES: tuple[str, ...] = tuple(r.name for r in REGISTRY if r.target is Target.SETTINGS)
"""The training remedies: what ``apply_settings`` takes."""
LABELS: dict[str, str] = {r.name: r.label for r in REGISTRY}


def use_activation(model: nn.Module, to: str = "relu") -> nn.Module:
    """Swap activations for ``to`` (``"relu"``, ``"leaky_relu"`` or ``"gelu"``) in a copy.

    Saturating activations (Sigmoid, Tanh, Hardtanh, ...) are replaced by every target;
    LeakyReLU and GELU replace ReLU too (the cure for dead units). Activation modules are
    swapped anywhere in the tree. Functional calls in ``forward`` (``torch.sigmoid``,
    ``F.tanh``, ``x.sigmoid()``, ...) are rewritten when ``torch.fx`` can trace the model;
    then the result is an ``fx.GraphModule`` (it keeps the submodules and their names, not the
    model's other methods, and Python branches are fixed as traced). An activation after the
    last parameter layer (e.g. a final Sigmoid for BCE) is kept.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is not changed.
    to : {"relu", "leaky_relu", "gelu"}
        The activation to put in.

    Returns
    -------
    torch.nn.Module
        A new model with the same weights.

    Raises
    ------
    RemedyNotApplicable
        Nothing to replace, or only functional calls that torch.fx cannot trace.
    """
    if to not in TARGETS:
        raise ValueError(f"Unknown activation {to!r}; choose from relu, leaky_relu, gelu.")
    return apply_remedies(model, [to])


def use_relu(model: nn.Module) -> nn.Module:
    """``use_activation(model, "relu")``: ReLU in place of saturating activations."""
    return use_activation(model, "relu")


def he_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Kaiming-normal weights (fan_in, ReLU gain) on every Linear/Conv, zero biases, in a copy.

    The output layer is re-initialised too, to keep the rule simple. Weights are drawn on the
    CPU from a ``torch.Generator`` seeded with ``seed`` (the global RNG is untouched), so a seed
    gives the same weights on every device. :func:`xavier_init` is the same with Glorot's rule.

    Raises
    ------
    RemedyNotApplicable
        The model has no Linear or Conv layer.
    """
    return apply_remedies(model, ["he_init"], seed=seed)


def xavier_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Glorot-uniform weights (std ``sqrt(2 / (fan_in + fan_out))``), zero biases, in a copy.

    Made for tanh/sigmoid networks; otherwise as :func:`he_init`.
    """
    return apply_remedies(model, ["xavier_init"], seed=seed)


def add_batchnorm(model: nn.Module) -> nn.Module:
    """Put a BatchNorm after each Linear/Conv except the output layer, in a copy.

    Each such layer ``m`` becomes ``nn.Sequential(m, bn)`` in its parent (so ``"3"`` becomes
    ``"3.0"`` and ``"3.1"``), which places the norm before the activation that follows and
    works in any module tree. Conv layers get BatchNorm1d/2d/3d; Linear layers get
    :class:`FeatureBatchNorm1d`. The output layer is the last Linear/Conv registered.

    Raises
    ------
    RemedyNotApplicable
        The model already has BatchNorm, or has no hidden Linear/Conv layer.
    """
    return apply_remedies(model, ["batchnorm"])


def add_layernorm(model: nn.Module) -> nn.Module:
    """Put a LayerNorm after each Linear/Conv except the output layer, in a copy.

    For where BatchNorm does not fit: sequences, transformer-style Linear blocks, batch size 1.
    Placed as :func:`add_batchnorm` places BatchNorm; Linear layers get ``nn.LayerNorm`` over
    their features, Conv layers ``nn.GroupNorm(1, channels)`` (LayerNorm over channels and
    positions).

    Raises
    ------
    RemedyNotApplicable
        The model already has BatchNorm, LayerNorm or GroupNorm, or no hidden Linear/Conv.
    """
    return apply_remedies(model, ["layernorm"])


def add_residual(model: nn.Module) -> nn.Module:
    """Wrap each hidden block that keeps its input's shape in ``x + f(x)``, in a copy.

    A block is a Linear with as many outputs as inputs, or a stride-1 Conv that keeps its
    channels and size, with the activation (and norms, dropout) that follow it in a
    Sequential; or a custom module whose forward is such a chain (read with torch.fx). Nested
    modules are searched too; the output layer is never wrapped. In a Sequential the block's
    modules become one :class:`Residual` (``"0"`` and ``"1"`` become ``"0.0"`` and ``"0.1"``).

    Raises
    ------
    RemedyNotApplicable
        No hidden block keeps its input's shape.
    """
    return apply_remedies(model, ["residual"])
