"""The structure of a model, found from its layer names: blocks, kinds and short names.

A real model has 40 to 500 parameterised layers; a person reads it as a dozen repeated blocks
(``transformer.h.3``, ``bert.encoder.layer.5``, a ResNet stage) plus a few standalone layers
(embeddings, a final norm, a head). Everything here works from the names alone, because a run
followed from a log on disk has names but no model; a model, when given, adds each layer's
module type and parameter count and sharpens its kind. Numpy only: the diagnosis uses it.

A **block** is a numbered child (``h.3``) of the outermost container that has at least two
numbered children holding two or more layers each. A block's gradient norm is the L2 norm
over all its parameters, computed from the recorded per-layer norms: ``sqrt(sum(n_i ** 2))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..history import History, Series, _Buckets
from ._naming import block_of, block_short, kind_of, short_names

__all__ = ["KINDS", "Group", "LayerInfo", "Structure", "grouped_history", "layer_groups"]

KINDS = ("embedding", "attention", "mlp", "conv", "norm", "head", "other")


@dataclass(frozen=True)
class LayerInfo:
    """One parameterised layer.

    Attributes
    ----------
    name : str
        Full module name, as the recorder and the history use it.
    short : str
        Shortest unambiguous display name (``h.3.attn.c_attn``).
    kind : str
        One of :data:`KINDS`.
    block : str or None
        Full name of the block holding the layer (``transformer.h.3``), None if standalone.
    module_type : str
        Class name of the module ("" when only the name is known).
    params : int
        Parameters the layer owns (0 when only the name is known).
    """

    name: str
    short: str
    kind: str
    block: str | None
    module_type: str = ""
    params: int = 0

    @property
    def tooltip(self) -> str:
        """Full name, module type and parameter count, for a chart's tooltip."""
        extra = [self.module_type] if self.module_type else []
        extra += [f"{self.params:,} parameters"] if self.params else []
        return " · ".join([self.name, *extra])


@dataclass(frozen=True)
class Group:
    """A block, or a standalone layer, in depth order.

    Attributes
    ----------
    name, short : str
        Full and display name (the block's path, or the standalone layer's names).
    layers : tuple of int
        Indices of its layers in the structure's layer order.
    is_block : bool
        True for a repeated block, False for a standalone layer.
    """

    name: str
    short: str
    layers: tuple[int, ...]
    is_block: bool


@dataclass(frozen=True)
class Structure:
    """Layers, their blocks and kinds; see :func:`layer_groups`."""

    layers: tuple[LayerInfo, ...]
    groups: tuple[Group, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """Full layer names, in order."""
        return tuple(info.name for info in self.layers)

    @property
    def blocks(self) -> tuple[Group, ...]:
        """The repeated blocks only."""
        return tuple(g for g in self.groups if g.is_block)

    def kind_of(self, group: Group) -> str:
        """A standalone layer's kind; "block" for a block."""
        return "block" if group.is_block else self.layers[group.layers[0]].kind

    def group_norms(self, values: np.ndarray) -> np.ndarray:
        """L2 norm over each group's layers of per-layer norms ``values`` (``(..., L)``).

        NaN (no gradient) counts as absent; a group with no value at all stays NaN.
        """
        values = np.asarray(values, np.float64)
        member = self._membership()
        squares = np.where(np.isnan(values), 0.0, values * values) @ member
        present = (~np.isnan(values)).astype(np.float64) @ member
        return np.where(present > 0, np.sqrt(squares), np.nan).astype(np.float32)

    def _membership(self) -> np.ndarray:
        member = np.zeros((len(self.layers), len(self.groups)))
        for j, group in enumerate(self.groups):
            member[list(group.layers), j] = 1.0
        return member


def layer_groups(source: Any, model: Any = None) -> Structure:
    """The blocks, kinds and display names of a model's layers.

    Parameters
    ----------
    source : History, Recorder, torch.nn.Module or sequence of str
        Where the layer names come from, input to output. A module alone gives its
        parameterised layers in registration order (a Recorder orders them by execution).
    model : torch.nn.Module, optional
        The model, for each layer's module type and parameter count; names alone suffice.

    Returns
    -------
    Structure

    Examples
    --------
    >>> s = layer_groups(["wte", "h.0.attn", "h.0.mlp", "h.1.attn", "h.1.mlp", "ln_f"])
    >>> [g.short for g in s.groups]
    ['wte', 'h.0', 'h.1', 'ln_f']
    """
    if hasattr(source, "named_modules"):
        model = source if model is None else model
        names = tuple(_own_params(source))
    else:
        names = tuple(getattr(source, "layers", source))
    if model is None:
        return _from_names(names)
    modules = dict(model.named_modules())
    owned = _own_params(model)
    types = tuple(type(modules[n]).__name__ if n in modules else "" for n in names)
    return _build(names, types, tuple(owned.get(n, 0) for n in names))


def grouped_history(history: History, structure: Structure | None = None) -> History:
    """``history`` with every per-layer series reduced to one column per group.

    The ``last`` value of a group is exactly the L2 norm of its layers' values at that step;
    ``lo`` and ``hi`` are the L2 norms of the layers' bucket minima and maxima (bounds, since
    layers need not peak in the same step). Meant for gradient norms; scalar series are kept.
    """
    structure = structure or layer_groups(history)
    width = len(history.layers)
    out = History(tuple(g.name for g in structure.groups), history.capacity)
    for name in history.metrics:
        s = history.series(name)
        if s.last.shape[1] == width and name not in _SCALAR_LIKE:
            s = Series(s.steps, *(structure.group_norms(a) for a in (s.last, s.lo, s.hi)))
        capacity = max(history.capacity, len(s) + len(s) % 2)
        out._series[name] = _Buckets.from_state(_state(s), capacity)
    out.version = history.version
    return out


_SCALAR_LIKE = frozenset({"loss", "train_loss", "accuracy", "test_accuracy"})


def _state(s: Series) -> dict[str, Any]:
    arrays = {"last": s.last, "lo": s.lo, "hi": s.hi}
    return {"width": s.last.shape[1], "stride": 1, "steps": s.steps, "open": None, **arrays}


def _own_params(model: Any) -> dict[str, int]:
    """Parameter count of each module owning parameters directly (a tied weight counts once)."""
    seen: set[int] = set()
    counts = {}
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            counts[name or type(module).__name__] = sum(p.numel() for p in own)
    return counts


@lru_cache(maxsize=64)
def _from_names(names: tuple[str, ...]) -> Structure:
    # Cached: the diagnosis and the view ask again for the same layers at every refresh.
    return _build(names, ("",) * len(names), (0,) * len(names))


def _build(names: tuple[str, ...], types: tuple[str, ...], params: tuple[int, ...]) -> Structure:
    blocks = block_of(names)
    shorts = short_names(names)
    last = len(names) - 1
    has_blocks = any(blocks)
    infos = tuple(
        LayerInfo(
            name,
            shorts[i],
            kind_of(name, types[i], blocks[i] is not None, has_blocks and i == last),
            blocks[i],
            types[i],
            params[i],
        )
        for i, name in enumerate(names)
    )
    return Structure(infos, _groups(infos))


def _groups(infos: tuple[LayerInfo, ...]) -> tuple[Group, ...]:
    """Groups in order of their first layer (a block's layers need not be contiguous)."""
    members: dict[str, list[int]] = {}
    for i, info in enumerate(infos):
        members.setdefault(info.block or info.name, []).append(i)
    return tuple(
        Group(
            key,
            block_short(key) if infos[i[0]].block else infos[i[0]].short,
            tuple(i),
            infos[i[0]].block is not None,
        )
        for key, i in members.items()
    )
