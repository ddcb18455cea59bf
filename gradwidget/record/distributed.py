"""Correct per-layer numbers when one model trains on several processes (``torch.distributed``).

Two cases, told apart by the parameters themselves:

* **Replicated** (DDP, or any data parallelism that all-reduces gradients after backward):
  every rank holds the full, already averaged gradients, so rank 0 alone records; the recorder
  on any other rank does nothing at all.
* **Sharded** (FSDP2's ``fully_shard``: parameters and gradients are ``DTensor`` shards): a
  layer's norm is ``sqrt(sum over ranks of each rank's local sum of squares)``. Every rank
  computes its local squared norms, then **one** ``all_reduce`` per capture sums them (the
  recorder's stage (b)), so every rank ends the capture with the same global norms. Loss and
  activation statistics stay each rank's own (its batch); rank 0 writes its view to the log.

Collectives must be called by every rank in the same order, so under sharding every rank
captures on every step (no adaptive interval, which would differ between ranks).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import GradWidgetError

__all__ = ["Scope", "check_parameters", "local", "rank", "unwrap", "world_size"]

try:  # DTensor is public from torch 2.4; older or minimal builds simply have no sharding
    from torch.distributed.tensor import DTensor
except ImportError:  # pragma: no cover
    DTensor = None  # type: ignore[assignment,misc]


def _initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's rank in the default group (0 without ``torch.distributed``)."""
    return torch.distributed.get_rank() if _initialized() else 0


def world_size() -> int:
    """Processes in the default group (1 without ``torch.distributed``)."""
    return torch.distributed.get_world_size() if _initialized() else 1


def local(tensor: torch.Tensor) -> torch.Tensor:
    """The shard this rank holds of a ``DTensor``; any other tensor unchanged.

    Fused ops such as ``torch._foreach_copy_`` have no sharding strategy for DTensors, and a
    DTensor norm would be a collective per tensor: work on the plain local shard instead.
    """
    if DTensor is not None and isinstance(tensor, DTensor):
        return tensor.to_local()
    return tensor


def unwrap(model: nn.Module) -> nn.Module:
    """The user's module inside a ``DistributedDataParallel`` wrapper (layer names without
    the ``module.`` prefix; the hooks see the same forward)."""
    inner = getattr(model, "module", None)
    if isinstance(model, nn.parallel.DistributedDataParallel) and isinstance(inner, nn.Module):
        return inner
    return model


def check_parameters(layers: Sequence[Any]) -> None:
    """Raise if a layer's module no longer holds the parameters the recorder found.

    ``fully_shard`` replaces every parameter with a new ``DTensor`` one: a recorder made
    before it would read gradients that never come (all NaN) without a word.
    """
    for layer in layers:
        current = {id(p) for p in layer.module.parameters(recurse=False)}
        if any(id(p) not in current for p in layer.params):
            raise GradWidgetError(
                f"The parameters of layer {layer.name!r} were replaced after the Recorder was "
                "made (fully_shard does this). Create the Recorder after fully_shard(model) "
                "or DistributedDataParallel(model)."
            )


@dataclass(frozen=True)
class Scope:
    """Where this process stands: its rank, the world size, and whether parameters are shards.

    Attributes
    ----------
    rank, world : int
        This process's rank and the number of processes (0 and 1 outside ``torch.distributed``).
    sharded : bool
        Parameters are ``DTensor`` shards (FSDP2): captures need the one ``all_reduce``.
    """

    rank: int = 0
    world: int = 1
    sharded: bool = False
    group: Any = None  # the process group the shards are spread over (None: default group)

    @classmethod
    def of(cls, params: Sequence[torch.Tensor]) -> Scope:
        """The scope of a model with parameters ``params`` in this process.

        Raises
        ------
        GradWidgetError
            Parameters sharded over more than one mesh dimension (tensor parallelism).
        """
        shards = [p for p in params if DTensor is not None and isinstance(p, DTensor)]
        if not shards or world_size() == 1:
            return cls(rank(), world_size())
        return cls(rank(), world_size(), True, _shard_group(shards))

    @property
    def records(self) -> bool:
        """True where the recorder does any work: everywhere if sharded, else on rank 0 only."""
        return self.sharded or self.rank == 0

    @property
    def writes(self) -> bool:
        """True on the one process that writes the log and shows the numbers."""
        return self.rank == 0

    def reduce_squares(self, squares: torch.Tensor) -> torch.Tensor:
        """Sum each rank's local squared norms over the ranks: the one ``all_reduce`` of a
        capture (the recorder's stage (b)), whatever the number of layers."""
        torch.distributed.all_reduce(squares, group=self.group)
        return squares

    def total(self, counts: np.ndarray, norms: np.ndarray) -> np.ndarray:
        """Non-finite ``counts`` of the local shards, summed over the ranks if sharded.

        Only when a (reduced, so on every rank the same) norm in ``norms`` is not finite:
        every rank then joins this rare second collective, and no rank otherwise.
        """
        if not self.sharded or np.isfinite(norms).all():
            return counts
        summed = torch.as_tensor(counts, dtype=torch.float64).clone()
        torch.distributed.all_reduce(summed, group=self.group)
        return summed.numpy()


def _shard_group(params: Sequence[Any]) -> Any:
    """The group of the one mesh dimension that shards every parameter.

    Under HSDP (a 2-D mesh: replicas x shards) the squares must be summed over the shard
    dimension only; summing over the replicas too would count each shard once per replica.
    """
    layouts = {
        (id(p.device_mesh), tuple(i for i, place in enumerate(p.placements) if place.is_shard()))
        for p in params
    }
    if len(layouts) != 1 or len(next(iter(layouts))[1]) != 1:
        raise GradWidgetError(
            "gradwidget reads FSDP2 parameters sharded over one mesh dimension (fully_shard, "
            "with or without replicas); this model's parameters are sharded over several "
            "dimensions or meshes (tensor parallelism), which it cannot add up yet. Record a "
            "model sharded by fully_shard alone."
        )
    mesh, (dim,) = params[0].device_mesh, next(iter(layouts))[1]
    return mesh.get_group(dim)
