"""One-click remedies for vanishing gradients: ``nn.Module -> new nn.Module``.

Every remedy works on a deep copy: the model passed in, its parameters and its hooks are never
changed. Forward/backward hooks (a Recorder's, or yours) are not carried into the copy, so the
copy can be recorded on its own; torch's own hook objects (old-style weight/spectral norm) are.

Layers inside torch's own composite modules (``nn.LSTM``, ``nn.MultiheadAttention``,
``nn.TransformerEncoderLayer`` ...) are left alone: torch reads their weights directly, so
wrapping or swapping them would break those modules or be bypassed by their fast paths.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

from ._batchnorm import FeatureBatchNorm1d, plan_batchnorm
from ._he import plan_he_init
from ._plan import Change, Plan
from ._relu import plan_relu
from ._tree import copy_without_hooks

__all__ = [
    "LABELS",
    "REMEDY_NAMES",
    "Change",
    "FeatureBatchNorm1d",
    "add_batchnorm",
    "apply_remedies",
    "check",
    "he_init",
    "use_relu",
]

REMEDY_NAMES: tuple[str, ...] = ("relu", "he_init", "batchnorm")
LABELS: dict[str, str] = {"relu": "ReLU", "he_init": "He init", "batchnorm": "BatchNorm"}
# Activations first (BatchNorm wraps layers, then He init sees the final layer set).
_CANONICAL_ORDER = ("relu", "batchnorm", "he_init")


def use_relu(model: nn.Module) -> nn.Module:
    """Replace saturating activations (Sigmoid, Tanh, Hardtanh, ...) by ReLU in a copy.

    Activation modules are swapped anywhere in the tree. Functional calls in ``forward``
    (``torch.sigmoid``, ``F.tanh``, ``x.sigmoid()``, ...) are rewritten when ``torch.fx`` can
    trace the model; then the result is an ``fx.GraphModule`` (it keeps the submodules and
    their names, not the model's other methods, and Python branches are fixed as traced).
    An activation after the last parameter layer (e.g. a final Sigmoid for BCE) is kept.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is not changed.

    Returns
    -------
    torch.nn.Module
        A new model with the same weights.

    Raises
    ------
    RemedyNotApplicable
        Nothing to replace, or only functional calls that torch.fx cannot trace.
    """
    return plan_relu(copy_without_hooks(model)).build()


def he_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Kaiming-normal weights (fan_in, ReLU gain) on every Linear/Conv, zero biases, in a copy.

    The output layer is re-initialised too, to keep the rule simple. Weights are drawn on the
    CPU from a ``torch.Generator`` seeded with ``seed`` (the global RNG is untouched), so a seed
    gives the same weights on every device.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is not changed.
    seed : int
        Seed of the generator.

    Returns
    -------
    torch.nn.Module
        A new model.

    Raises
    ------
    RemedyNotApplicable
        The model has no Linear or Conv layer.
    """
    return plan_he_init(copy_without_hooks(model), seed).build()


def add_batchnorm(model: nn.Module) -> nn.Module:
    """Put a BatchNorm after each Linear/Conv except the output layer, in a copy.

    Each such layer ``m`` becomes ``nn.Sequential(m, bn)`` in its parent (so ``"3"`` becomes
    ``"3.0"`` and ``"3.1"``), which places the norm before the activation that follows and
    works in any module tree. Conv layers get BatchNorm1d/2d/3d; Linear layers get
    :class:`FeatureBatchNorm1d`. The output layer is the last Linear/Conv registered.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is not changed.

    Returns
    -------
    torch.nn.Module
        A new model with the same layer weights.

    Raises
    ------
    RemedyNotApplicable
        The model already has BatchNorm, or has no hidden Linear/Conv layer.
    """
    return plan_batchnorm(copy_without_hooks(model)).build()


def check(model: nn.Module, name: str) -> Change:
    """Describe what remedy ``name`` would change, without touching ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    name : str
        One of ``REMEDY_NAMES``.

    Returns
    -------
    Change
        Summary and equivalent plain-PyTorch code.

    Raises
    ------
    RemedyNotApplicable
        Exactly when applying the remedy would raise it.
    ValueError
        ``name`` is not a remedy.
    """
    return _plan(_known(name), copy_without_hooks(model), seed=0).change


def apply_remedies(model: nn.Module, names: Iterable[str], seed: int = 0) -> nn.Module:
    """Apply several remedies in the order relu -> batchnorm -> he_init, on a copy.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is not changed.
    names : iterable of str
        Remedies from ``REMEDY_NAMES``, in any order; duplicates are ignored. Empty gives an
        unchanged copy.
    seed : int
        Seed for ``he_init``.

    Returns
    -------
    torch.nn.Module
        The remedied copy.

    Raises
    ------
    ValueError
        An unknown name.
    RemedyNotApplicable
        One of the remedies does not apply to the model (after the earlier ones).
    """
    chosen = {_known(name) for name in ([names] if isinstance(names, str) else names)}
    result = copy_without_hooks(model)
    for name in _CANONICAL_ORDER:
        if name in chosen:
            result = _plan(name, copy_without_hooks(result), seed).build()
    return result


def _known(name: str) -> str:
    if name not in REMEDY_NAMES:
        raise ValueError(f"Unknown remedy {name!r}; choose from {', '.join(REMEDY_NAMES)}.")
    return name


def _plan(name: str, model: nn.Module, seed: int) -> Plan:
    if name == "he_init":
        return plan_he_init(model, seed)
    return plan_relu(model) if name == "relu" else plan_batchnorm(model)
