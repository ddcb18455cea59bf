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
_SATURATED_ABOVE = 0.97  # sigmoid: above 0.97 or below 0.03; tanh: |x| above 0.97
_CHANNELS_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase)


def activation_stats(xs: torch.Tensor, saturation: str | None, unit: int | None) -> torch.Tensor:
    """Mean, std, dead fraction and saturated fraction of a stack of outputs, as ``(G, 4)``.

    Parameters
    ----------
    xs : torch.Tensor
        ``G`` outputs of the same shape stacked on dim 0, each batch first.
    saturation : {"sigmoid", "tanh", None}
        Which saturation rule applies (None: saturation is NaN, not applicable).
    unit : int or None
        Dimension of one output that holds its units (None: every element is a unit).

    Notes
    -----
    One call per group of same-shaped outputs instead of one per layer: on CPU each small op
    costs microseconds whatever its size. ``sum`` and ``vector_norm`` are about 40x cheaper
    than ``std_mean`` there. A unit is dead when its largest and smallest output over the
    whole batch are both exactly zero.
    """
    xs = xs if xs.dtype in (torch.float32, torch.float64) else xs.float()
    flat = xs.flatten(1)
    n = flat.shape[1]
    mean = flat.sum(1) / n
    std = (torch.linalg.vector_norm(flat, dim=1).square() / n - mean.square()).clamp_min(0).sqrt()
    if unit is None:
        dead = (flat == 0).sum(1) / n
    else:
        dims = tuple(d for d in range(1, xs.ndim) if d != unit + 1)
        units = (xs.amax(dims) == 0) & (xs.amin(dims) == 0)
        dead = units.sum(1) / units.shape[1]
    if saturation is None:
        saturated = torch.full_like(mean, math.nan)
    else:
        # Distance from the curve's centre beyond which it is flat (sigmoid: outside
        # [0.03, 0.97], tanh: outside [-0.97, 0.97]). In-place float ops: on CPU a boolean
        # comparison over the whole output costs about 3x a float one.
        centre = 0.5 if saturation == "sigmoid" else 0.0
        saturated = (flat - centre).abs_().gt_(_SATURATED_ABOVE - centre).sum(1) / n
    return torch.stack([mean, std, dead, saturated], 1).float()


def _unit_dim(x: torch.Tensor, channels_first: bool) -> int | None:
    """Channels (dim 1) for conv outputs; features, the last dim, of 3-D sequence outputs."""
    if x.ndim < 2:
        return None
    return 2 if x.ndim == 3 and not channels_first else 1


def _first_tensor(output: Any) -> torch.Tensor | None:
    """The tensor a module produced (LSTM and attention return tuples)."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)):
        return next((t for t in map(_first_tensor, output) if t is not None), None)
    return None


def _measurable(x: torch.Tensor) -> bool:
    return x.is_floating_point() and x.numel() > 0


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
        self._outputs: dict[str, tuple[torch.Tensor, str | None, int | None]] = {}
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
        """Statistics of the outputs seen since the last call, by layer; stops noting order.

        The hooks only keep each layer's latest output (autograd holds it until backward
        anyway); the statistics are computed here, one batch of ops per group of same-shaped
        outputs.
        """
        outputs, self._outputs = self._outputs, {}
        self._noting_order = False
        groups: dict[tuple, list[str]] = {}
        for name, (x, saturation, unit) in outputs.items():
            groups.setdefault((x.shape, x.dtype, x.device, saturation, unit), []).append(name)
        stats = {}
        for (_, _, _, saturation, unit), names in groups.items():
            xs = torch.stack([outputs[name][0] for name in names])
            stats.update(zip(names, activation_stats(xs, saturation, unit), strict=True))
        return stats

    def forget(self) -> None:
        """Drop the outputs seen so far without measuring them; stop noting the order."""
        self._outputs = {}
        self._noting_order = False

    def rows(self, names: Sequence[str], device: torch.device) -> dict[str, torch.Tensor]:
        """:meth:`take`, as one ``(len(names),)`` tensor per field of :data:`FIELDS` (NaN: no
        output seen for that layer)."""
        stats = self.take()
        nan = torch.full((len(FIELDS),), math.nan, device=device)
        rows = torch.stack([stats.get(name, nan).to(device) for name in names])
        return dict(zip(FIELDS, rows.T, strict=True))

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
            if self._current is not None and out is not None and _measurable(out):
                # An activation right after a layer replaces the layer's own output.
                unit = _unit_dim(out, channels_first)
                self._outputs[self._current] = (out.detach(), saturation, unit)

        return hook
