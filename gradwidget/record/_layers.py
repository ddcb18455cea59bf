"""The layers of a model and the per-parameter measurements that are combined per layer.

A *layer* is a module that owns parameters directly; a tied weight counts once, in the first
module that owns it. Norms are measured per parameter on the device as **squared** norms (one
fused ``torch._foreach_norm``) and combined per layer on the host: a segment sum in numpy costs
microseconds where a chain of small torch ops on CPU costs tens of them, and squares of shards
add up across processes where norms do not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._memory import UPDATE_FLOOR, UPDATE_SHARE
from ._transfer import wide
from .distributed import local

__all__ = ["Layer", "Layers", "UpdateTracker", "find_layers", "squares"]

# Update ratios from a sample of each tensor (measured in docs/performance.md:
# 1024 coordinates give a p90 relative error of 3-4 % against the exact per-tensor ratio).
_SAMPLE = 1024
_COMMON = 0.7  # of the budget, at most, for the common count; the rest goes by size


@dataclass(frozen=True)
class Layer:
    """One layer: its name, its module and the parameters it owns."""

    name: str
    module: nn.Module
    params: tuple[nn.Parameter, ...]


def find_layers(model: nn.Module) -> list[Layer]:
    """Modules owning parameters directly, in registration order; a tied weight counts once."""
    seen: set[int] = set()
    layers = []
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            layers.append(Layer(name or type(module).__name__, module, tuple(own)))
    return layers


def squares(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Squared L2 norm of each tensor, from one fused norm, stacked on ``device``."""
    norms = torch._foreach_norm([local(t) for t in tensors])  # a DTensor's own shard
    try:
        stacked = torch.stack(norms)
    except RuntimeError:  # parameters of several dtypes or devices
        stacked = torch.stack([n.to(device, torch.float32) for n in norms])
    return stacked.to(wide(device)).square()


class Layers:
    """Layers in a fixed order, their parameters flattened, and per-layer sums on the host."""

    def __init__(self, layers: list[Layer]) -> None:
        self.layers = layers
        self.params = [p for layer in layers for p in layer.params]
        self.owner = np.array([i for i, layer in enumerate(layers) for _ in layer.params])
        self.device = self.params[0].device
        # The sentinel: the smallest trainable parameter of the layer nearest the loss, so that
        # its norm is the cheapest to take and reacts to anything that moves the loss.
        trainable = [p for layer in reversed(layers) for p in layer.params if p.requires_grad]
        last = {id(p) for p in layers[-1].params}
        nearest = [p for p in trainable if id(p) in last] or trainable[:1]
        self.sentinel = min(nearest, key=torch.Tensor.numel) if nearest else None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(layer.name for layer in self.layers)

    def per_layer(self, squared: np.ndarray, present: list[int] | None = None) -> np.ndarray:
        """Per-layer L2 norm: root of the sum of the layer's squared norms (NaN: none)."""
        owner = self.owner if present is None else self.owner[present]
        total = np.bincount(owner, squared.astype(np.float64), len(self.layers))
        has = np.bincount(owner, minlength=len(self.layers)) > 0
        return np.where(has, np.sqrt(total), np.nan)

    def update_ratio(self, weight_sq: np.ndarray, update_sq: np.ndarray) -> tuple[np.ndarray, ...]:
        """Per-layer ‖θ‖ and ‖Δθ‖/‖θ‖ (NaN where the weights are all zero)."""
        weight, moved = self.per_layer(weight_sq), self.per_layer(update_sq)
        ratio = np.divide(moved, weight, out=np.full_like(moved, np.nan), where=weight > 0)
        return weight, ratio

    def count_nonfinite(self, norms: np.ndarray, exact: bool) -> np.ndarray:
        """NaN/Inf gradient entries per layer; only counted where a norm says there are some.

        A NaN norm also means "this layer got no gradient": counting over the gradients that
        exist tells the two apart. Counting reads the gradients as they are now, so it is
        ``exact`` only while they are still the captured ones (a transfer that landed at once,
        on CPU); otherwise a layer counts 1, "at least one", instead of a host sync.
        """
        counts = np.zeros(len(self.layers))
        finite = np.isfinite(norms)
        if finite.all():  # the usual case, on every gradient capture
            return counts
        for i in np.flatnonzero(~finite):
            grads = [p.grad for p in self.layers[i].params if p.grad is not None]
            if grads and not exact:
                counts[i] = 1.0
            elif grads:
                counts[i] = sum(int((~torch.isfinite(local(g))).sum()) for g in grads)
        return counts


@dataclass(frozen=True)
class _Slice:
    """Which coordinates of one flattened tensor are sampled: ``start::stride``, ``count``."""

    start: int
    stride: int
    count: int
    numel: int

    def of(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sampled coordinates of ``tensor`` as a view (no copy)."""
        end = self.start + (self.count - 1) * self.stride + 1
        return _flat(tensor)[self.start : end : self.stride]


def _flat(tensor: torch.Tensor) -> torch.Tensor:
    """A 1-D view of a tensor in memory order (channels-last weights too, without a copy)."""
    if tensor.is_contiguous():
        return tensor.view(-1)
    strides = tensor.stride()
    order = sorted(range(tensor.ndim), key=lambda d: -strides[d])
    permuted = tensor.permute(order)
    return permuted.view(-1) if permuted.is_contiguous() else permuted.reshape(-1)


def _counts(numels: list[int], sizes: list[int]) -> list[int]:
    """How many coordinates of each tensor to sample, all of them within the byte budget.

    First the largest common count up to ``_SAMPLE`` that fits in ``_COMMON`` of the budget;
    the rest then goes to large tensors in proportion to their size (a sparse update, such as
    an embedding's few used rows, needs many coordinates to be seen at all: spending the whole
    budget on a common count left the 10M GPT-2's embedding at 354 coordinates and a 92 %
    error under SGD, 38 % with this split).
    """
    total = sum(n * s for n, s in zip(numels, sizes, strict=True))
    budget = max(UPDATE_SHARE * total, UPDATE_FLOOR) - 16 * len(numels)  # 2 float64 a tensor

    def held(counts: list[int]) -> float:
        return sum(k * s for k, s in zip(counts, sizes, strict=True))

    def at(cap: int, share: float) -> list[int]:
        return [min(n, max(cap, int(share * n))) for n in numels]

    low, high = 1, _SAMPLE
    while low < high:  # bisection: the held bytes grow with the common count
        mid = (low + high + 1) // 2
        low, high = (mid, high) if held(at(mid, 0.0)) <= _COMMON * budget else (low, mid - 1)
    share, step = 0.0, budget / max(total, 1)  # no larger share can fit
    for _ in range(20):  # then the largest share that still fits, to 1e-6 of that
        share, step = (
            (share + step, step / 2) if held(at(low, share + step)) <= budget else (share, step / 2)
        )
    return at(low, share)


def plan_sample(tensors: list[torch.Tensor], seed: int = 0) -> list[_Slice]:
    """A fixed sample of each tensor: evenly strided from a random start, whole when small.

    The stride is coprime with the last dimension, so the sample of a weight matrix walks
    through every column and many rows (a stratified sample) rather than down one column.
    """
    counts = _counts([t.numel() for t in tensors], [t.element_size() for t in tensors])
    rng = np.random.default_rng(seed)
    plan = []
    for t, count in zip(tensors, counts, strict=True):
        n = t.numel()
        stride = max(1, n // max(count, 1))  # an empty tensor samples nothing
        last = t.shape[-1] if t.ndim else 1
        while stride > 1 and math.gcd(stride, last) != 1:
            stride -= 1
        start = int(rng.integers(0, n - (count - 1) * stride)) if n else 0
        plan.append(_Slice(start, stride, count, n))
    return plan


class UpdateTracker:
    """Squared norms of the weights at a sample and of the optimizer step that follows it.

    Instead of a copy of every weight (as much memory again as the model), the tracker keeps
    a fixed sample of each tensor (:func:`plan_sample`: a quarter of 1 % of the parameter bytes
    in all, see :mod:`gradwidget.record._memory`). The weight norms are exact; the update of a
    tensor is estimated as its exact weight norm times the ratio measured on the sample,
    ``||Δθ_s|| / ||θ_s||``, which is exact for tensors kept whole.
    """

    def __init__(self) -> None:
        self._plan: list[_Slice] = []
        self._before: list[torch.Tensor] = []
        self._whole: torch.Tensor | None = None  # n / count: scale where a sample is all zero
        self._weight_sq: torch.Tensor | None = None

    @property
    def pending(self) -> bool:
        """True between a sample and the measurement of the update that followed it."""
        return self._weight_sq is not None

    @property
    def nbytes(self) -> int:
        """Bytes this tracker holds on the parameters' device between samples."""
        held = [*self._before, self._whole, self._weight_sq]
        return sum(t.numel() * t.element_size() for t in held if t is not None)

    def prepare(self, params: list[nn.Parameter], device: torch.device) -> None:
        """Plan the sample before training: planned at the first sample, it took 1 of the
        2-3 ms of a 10-layer MLP's first capture, inside the training loop."""
        self._replan([local(p.detach()) for p in params], device)

    def keep(self, params: list[nn.Parameter], device: torch.device) -> None:
        """Remember the sampled weights now (before ``optimizer.step()``)."""
        current = [local(p.detach()) for p in params]  # DTensors: _foreach_copy_ has no rule
        if [s.numel for s in self._plan] != [t.numel() for t in current]:
            self._replan(current, device)  # not prepared, or the layers were reordered
        sampled = [s.of(t) for s, t in zip(self._plan, current, strict=True)]
        torch._foreach_copy_(self._before, sampled)
        self._weight_sq = squares(current, device)

    def measure(self, params: list[nn.Parameter], device: torch.device) -> dict[str, torch.Tensor]:
        """``weight_sq`` at the sample and the estimated ``update_sq`` of the step since."""
        weight, self._weight_sq = self._weight_sq, None
        assert weight is not None and self._whole is not None, "measure() follows keep()"
        after = [s.of(local(p.detach())) for s, p in zip(self._plan, params, strict=True)]
        before_sq = squares(self._before, device)
        moved_sq = squares(list(torch._foreach_sub(after, self._before)), device)
        ratio_sq = moved_sq / before_sq.clamp_min(torch.finfo(before_sq.dtype).tiny)
        update = torch.where(before_sq > 0, ratio_sq * weight, moved_sq * self._whole)
        return {"weight_sq": weight, "update_sq": update}

    def clear(self) -> None:
        self._plan, self._before, self._whole, self._weight_sq = [], [], None, None

    def _replan(self, current: list[torch.Tensor], device: torch.device) -> None:
        self._plan = plan_sample(current)
        self._before = [t.new_empty(s.count) for s, t in zip(self._plan, current, strict=True)]
        counts = [s.numel / max(s.count, 1) for s in self._plan]
        self._whole = torch.tensor(counts, dtype=wide(device), device=device)
