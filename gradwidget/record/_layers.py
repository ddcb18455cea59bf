"""The layers of a model and the per-parameter measurements that are combined per layer.

A *layer* is a module that owns parameters directly; a tied weight counts once, in the first
module that owns it. Norms are measured per parameter on the device as **squared** norms (one
fused ``torch._foreach_norm``) and combined per layer on the host: a segment sum in numpy costs
microseconds where a chain of small torch ops on CPU costs tens of them, and squares of shards
add up across processes where norms do not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._transfer import wide
from .distributed import local

__all__ = ["Layer", "Layers", "UpdateTracker", "find_layers", "squares"]


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
        for i in np.flatnonzero(~np.isfinite(norms)):
            grads = [p.grad for p in self.layers[i].params if p.grad is not None]
            if grads and not exact:
                counts[i] = 1.0
            elif grads:
                counts[i] = sum(int((~torch.isfinite(local(g))).sum()) for g in grads)
        return counts


class UpdateTracker:
    """Squared norms of the weights at a sample and of the optimizer step that follows it.

    The weights are copied into buffers reused from sample to sample: allocating a copy of
    every parameter each time costs page faults on CPU.
    """

    def __init__(self) -> None:
        self._before: list[torch.Tensor] = []
        self._weight_sq: torch.Tensor | None = None

    @property
    def pending(self) -> bool:
        """True between a sample and the measurement of the update that followed it."""
        return self._weight_sq is not None

    def keep(self, params: list[nn.Parameter], device: torch.device) -> None:
        """Remember the weights now (before ``optimizer.step()``)."""
        current = [local(p.detach()) for p in params]  # DTensors: _foreach_copy_ has no rule
        if [b.shape for b in self._before] != [p.shape for p in current]:
            self._before = [torch.empty_like(p) for p in current]
        torch._foreach_copy_(self._before, current)
        self._weight_sq = squares(current, device)

    def measure(self, params: list[nn.Parameter], device: torch.device) -> dict[str, torch.Tensor]:
        """``weight_sq`` at the sample and ``update_sq`` of the step taken since."""
        weight, self._weight_sq = self._weight_sq, None
        assert weight is not None, "measure() follows keep()"
        torch._foreach_sub_(self._before, [local(p.detach()) for p in params])  # in place
        return {"weight_sq": weight, "update_sq": squares(self._before, device)}

    def clear(self) -> None:
        self._before, self._weight_sq = [], None
