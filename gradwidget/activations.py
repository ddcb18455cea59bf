"""Activation statistics from forward hooks that exist only while a sampled forward runs.

A forward hook slows every call of its module even when it returns at once (the module leaves
PyTorch's fast path), so the probe is armed for one forward pass and disarmed right after.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["FIELDS", "ActivationProbe", "activation_stats"]

FIELDS = ("act_mean", "act_std", "dead_frac", "saturated_frac")

# Activation modules whose output describes the health of the layer before them. The value
# names the saturation rule that applies to their output (None: only "dead" applies).
_ACTIVATIONS: dict[type[nn.Module], str | None] = {
    nn.Sigmoid: "sigmoid",
    nn.Hardsigmoid: "sigmoid",
    nn.Tanh: "tanh",
    nn.Hardtanh: "tanh",
    nn.Softsign: "tanh",
    **dict.fromkeys(
        (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish,
         nn.Softplus, nn.Hardswish),
        None,
    ),
}  # fmt: skip
_SATURATED_BELOW, _SATURATED_ABOVE = 0.03, 0.97  # sigmoid outputs; tanh uses |x| > 0.97
_CHANNELS_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase)


def activation_stats(x: torch.Tensor, saturation: str | None, channels_first: bool) -> torch.Tensor:
    """Mean, std, dead fraction and saturated fraction of one output, as a device tensor (4,).

    Parameters
    ----------
    x : torch.Tensor
        A module's output, batch first.
    saturation : {"sigmoid", "tanh", None}
        Which saturation rule applies (None: saturation is NaN, not applicable).
    channels_first : bool
        Units are channels (dim 1) for conv outputs; for 3-D outputs of other modules they are
        the last dimension, as in (batch, time, features).

    Notes
    -----
    ``sum`` and ``vector_norm`` are about 40x cheaper than ``std_mean`` on CPU. A unit is dead
    when its largest and smallest output over the whole batch are both exactly zero.
    """
    x = x.detach()
    if not x.is_floating_point() or x.numel() == 0:
        return torch.full((4,), math.nan, device=x.device)
    x = x if x.dtype in (torch.float32, torch.float64) else x.float()
    n = x.numel()
    mean = x.sum() / n
    std = (torch.linalg.vector_norm(x).square() / n - mean.square()).clamp_min(0).sqrt()
    if x.ndim >= 2:
        unit = 2 if x.ndim == 3 and not channels_first else 1
        dims = tuple(d for d in range(x.ndim) if d != unit)
        dead = ((x.amax(dims) == 0) & (x.amin(dims) == 0)).float().mean()
    else:
        dead = (x == 0).float().mean()
    if saturation == "sigmoid":
        saturated = ((x < _SATURATED_BELOW) | (x > _SATURATED_ABOVE)).float().mean()
    elif saturation == "tanh":
        saturated = (x.abs() > _SATURATED_ABOVE).float().mean()
    else:
        saturated = torch.tensor(math.nan, device=x.device)
    return torch.stack([mean, std, dead, saturated]).float()


def _first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor a module produced (LSTM and attention return tuples)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((t for t in map(_first_tensor, output) if t is not None), None)
    return None


class ActivationProbe:
    """Forward hooks on a model's layers and activation modules, attached on demand.

    The statistics of a layer are those of the activation module that runs right after it
    (the ``Sigmoid`` after a ``Linear``), else of the layer's own output. While armed for the
    first time, the probe also notes the order in which layers first execute.

    Parameters
    ----------
    model : torch.nn.Module
        The model to observe.
    layers : sequence of (str, torch.nn.Module)
        The layers, by name, that statistics are reported for.
    """

    def __init__(self, model: nn.Module, layers: Sequence[tuple[str, nn.Module]]) -> None:
        self.model = model
        self._names = {id(module): name for name, module in layers}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._stats: dict[str, torch.Tensor] = {}
        self._current: str | None = None  # the layer that ran last in this forward
        self.execution_order: list[str] = []
        self._noting_order = True

    @property
    def armed(self) -> bool:
        """True while hooks are attached."""
        return bool(self._handles)

    def arm(self) -> None:
        """Attach the hooks for the next forward pass (no-op when already armed)."""
        if self._handles:
            return
        self._current = None
        for name, module in self._sites():
            self._handles.append(module.register_forward_hook(self._hook(name, module)))

    def disarm(self) -> None:
        """Remove every hook. Safe to call more than once."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    remove = disarm

    def take(self) -> dict[str, torch.Tensor]:
        """Statistics recorded since the last call, by layer name; stops noting the order."""
        stats, self._stats = self._stats, {}
        self._noting_order = False
        return stats

    def _sites(self) -> Iterator[tuple[str | None, nn.Module]]:
        """Layers (by name) and activation modules (None: they report for the layer before)."""
        for module in self.model.modules():
            if id(module) in self._names:
                yield self._names[id(module)], module
            elif type(module) in _ACTIVATIONS:
                yield None, module

    def _hook(self, name: str | None, module: nn.Module) -> Any:
        saturation = _ACTIVATIONS.get(type(module))
        channels_first = isinstance(module, _CHANNELS_FIRST)

        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if name is not None:
                self._current = name
                if self._noting_order and name not in self.execution_order:
                    self.execution_order.append(name)
            out = _first_tensor(output)
            if self._current is not None and out is not None:
                # An activation right after a layer overwrites the layer's own output stats.
                self._stats[self._current] = activation_stats(out, saturation, channels_first)

        return hook
