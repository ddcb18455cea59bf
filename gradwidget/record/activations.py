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
#: The most an activation sample's temporaries hold at once: a slice of the batch is read.
CHUNK_BYTES = 8 * 2**20
#: The most a stack of same-shaped outputs holds. Stacking saves an op per output, a few
#: microseconds, and costs a copy: right after a backward pass that copy is cold. In a managed
#: run of the mlp10 benchmark (ten 128x256 outputs) one stack of all ten made the statistics
#: cost 1.5 ms a sample; stacks of at most 256 KB, 0.9 ms.
STACK_BYTES = 256 * 2**10
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
    than ``std_mean`` there. The batch is read in slices of at most :data:`CHUNK_BYTES` (as
    float32), so the temporaries never exceed that, however large the activations: sums, zero
    counts and per-unit extremes add up across slices. A unit is dead when its largest and
    smallest output over the whole batch are both exactly zero.
    """
    n = xs[0].numel()
    per_row = 4 * xs.shape[0] * max(1, n // max(1, xs.shape[1]))  # float32 bytes of one row
    rows = max(1, CHUNK_BYTES // per_row)
    if rows >= xs.shape[1]:  # one slice, the usual case: right after a backward pass every
        # Python call counts (combining one slice cost 6 % of a sample on mlp10)
        total, squares, zeros, saturated, high, low = _partial_stats(xs, saturation, unit)
    else:
        total, squares, zeros, saturated, high, low = _combined(
            [_partial_stats(c, saturation, unit) for c in xs.split(rows, 1)]
        )
    mean = total / n
    std = (squares / n - mean.square()).clamp_min(0).sqrt()
    if unit is None:
        dead = zeros / n
    else:
        units = (high == 0) & (low == 0)
        dead = units.sum(1) / units.shape[1]
    saturated = torch.full_like(mean, math.nan) if saturation is None else saturated / n
    return torch.stack([mean, std, dead, saturated], 1).float()


def _partial_stats(
    chunk: torch.Tensor, saturation: str | None, unit: int | None
) -> tuple[torch.Tensor | None, ...]:
    """Sums, sum of squares, zeros, saturated count and per-unit extremes of one slice."""
    chunk = chunk if chunk.dtype in (torch.float32, torch.float64) else chunk.float()
    flat = chunk.flatten(1)
    total, squares = flat.sum(1), torch.linalg.vector_norm(flat, dim=1).square()
    zeros = high = low = saturated = None
    if unit is None:
        zeros = (flat == 0).sum(1)
    else:
        dims = tuple(d for d in range(1, chunk.ndim) if d != unit + 1)
        high, low = chunk.amax(dims), chunk.amin(dims)
    if saturation is not None:
        # Distance from the curve's centre beyond which it is flat (sigmoid: outside
        # [0.03, 0.97], tanh: outside [-0.97, 0.97]). In-place float ops: on CPU a boolean
        # comparison over the whole output costs about 3x a float one.
        centre = 0.5 if saturation == "sigmoid" else 0.0
        saturated = (flat - centre).abs_().gt_(_SATURATED_ABOVE - centre).sum(1)
    return total, squares, zeros, saturated, high, low


def _combined(parts: list[tuple[torch.Tensor | None, ...]]) -> tuple[torch.Tensor | None, ...]:
    """Every field over all slices: counts and sums added, per-unit extremes max / min."""
    reduces = (torch.sum,) * 4 + (torch.amax, torch.amin)
    fields = zip(*parts, strict=True)
    return tuple(
        None if field[0] is None else reduce(torch.stack(field), 0)
        for reduce, field in zip(reduces, fields, strict=True)
    )


def _stacked(outputs: list[torch.Tensor]) -> torch.Tensor:
    """The outputs on a new first dim: a view of a lone one, a copy of several."""
    return outputs[0].unsqueeze(0) if len(outputs) == 1 else torch.stack(outputs)


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
        # Built once: walking the model and making closures cost a fifth of arming a 10-layer
        # MLP, armed at every sample.
        self._hooks = [(module, self._hook(name, module)) for name, module in self._sites()]

    @property
    def armed(self) -> bool:
        """True while hooks are attached."""
        return bool(self._handles)

    def arm(self) -> None:
        """Attach the hooks for the next forward pass (no-op when already armed)."""
        if self._handles:
            return
        self._current = None
        self._handles = [module.register_forward_hook(hook) for module, hook in self._hooks]

    def disarm(self) -> None:
        """Remove every hook. Safe to call more than once."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    remove = disarm

    def take(self) -> dict[str, torch.Tensor]:
        """Statistics of the outputs seen since the last call, by layer; stops noting order.

        The hooks only keep each layer's latest output (autograd holds it until backward
        anyway); the statistics are computed here, one batch of ops per stack of same-shaped
        outputs of at most :data:`STACK_BYTES` (an output larger than that alone, uncopied).
        """
        outputs, self._outputs = self._outputs, {}
        self._noting_order = False
        groups: dict[tuple, list[str]] = {}
        for name, (x, saturation, unit) in outputs.items():
            groups.setdefault((x.shape, x.dtype, x.device, saturation, unit), []).append(name)
        stats = {}
        for (shape, _, _, saturation, unit), names in groups.items():
            fits = max(1, STACK_BYTES // (4 * math.prod(shape) or 1))  # outputs a stack may hold
            for at in range(0, len(names), fits):
                some = names[at : at + fits]
                xs = _stacked([outputs[name][0] for name in some])
                stats.update(zip(some, activation_stats(xs, saturation, unit), strict=True))
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
