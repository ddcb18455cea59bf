"""What the charts put along depth: blocks or layers, thinned to what the eye can use.

Pure numpy on top of :mod:`gradwidget.diagnose.structure`. A :class:`Columns` is a list of
positions, each a set of layers whose gradient norms combine as one L2 norm (a block, a layer,
or a run of layers when even the blocks are too many), so 3 and 500 layers read the same.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from ..diagnose.structure import Structure

__all__ = ["OVERVIEW", "Columns", "choices", "depth_columns", "select"]

OVERVIEW = "overview"
LAYERS = "layers"


@dataclass(frozen=True)
class Columns:
    """Positions along depth, each the L2 combination of some layers.

    Attributes
    ----------
    labels : tuple of str
        Short display names, unique.
    tooltips : tuple of str
        Full names (and module type / parameter count when known).
    members : tuple of tuple of int
        Layer indices of each position.
    norm : tuple of bool
        Whether a position holds only normalisation layers (their gains sit apart from the
        weight matrices, so the charts draw them as their own line instead of a sawtooth).
    unit : str
        "block" when positions are blocks, "layer" otherwise.
    """

    labels: tuple[str, ...]
    tooltips: tuple[str, ...]
    members: tuple[tuple[int, ...], ...]
    norm: tuple[bool, ...]
    unit: str
    _matrix: np.ndarray = field(default=None, repr=False, compare=False)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        width = 1 + max((i for m in self.members for i in m), default=-1)
        matrix = np.zeros((width, len(self.members)), np.float32)
        for j, layers in enumerate(self.members):
            matrix[list(layers), j] = 1.0
        object.__setattr__(self, "_matrix", matrix)

    def __len__(self) -> int:
        return len(self.labels)

    def norms(self, values: np.ndarray) -> np.ndarray:
        """L2 norm of each position's layers from per-layer norms ``values`` (``(..., L)``);
        NaN (no gradient) is left out, a position with no value at all is NaN."""
        values = np.asarray(values, np.float32)[..., : len(self._matrix)]
        if all(len(m) == 1 for m in self.members):  # a plain pick: no arithmetic, exact
            return values[..., [m[0] for m in self.members]]
        missing = np.isnan(values)
        squares = np.where(missing, 0.0, values * values) @ self._matrix
        present = (~missing).astype(np.float32) @ self._matrix
        return np.where(present > 0, np.sqrt(squares), np.nan).astype(np.float32)

    def worst(self, values: np.ndarray) -> np.ndarray:
        """Largest value over each position's layers (NaN where none has one)."""
        values = np.asarray(values, np.float32)
        out = np.full(len(self.members), np.nan, np.float32)
        for j, layers in enumerate(self.members):
            part = values[list(layers)]
            if np.isfinite(part).any():
                out[j] = np.nanmax(part)
        return out


def depth_columns(structure: Structure, max_columns: int = 48) -> Columns:
    """Blocks and standalone layers when the model has blocks, else layers; runs of
    neighbours merged when there are more than ``max_columns``."""
    if structure.blocks:
        groups = structure.groups
        columns = _columns(
            structure, [g.layers for g in groups], [g.short for g in groups], "block"
        )
    else:
        columns = _layer_columns(structure, range(len(structure.layers)))
    return _merge(structure, columns, max_columns)


def choices(structure: Structure) -> list[tuple[str, str]]:
    """(label, key) options of the gradient chart's view menu."""
    if not structure.blocks:
        return [("Layers", OVERVIEW), *_kind_choices(structure)]
    options = [("Blocks (L2 over each block)", OVERVIEW), ("Layers", LAYERS)]
    options += [(f"Block {b.short}", f"block:{b.name}") for b in structure.blocks]
    return options + _kind_choices(structure)


def select(structure: Structure, key: str, max_lines: int = 12) -> Columns:
    """The lines of view ``key``: at most ``max_lines``, first and last always included."""
    if key.startswith("block:"):
        block = next(g for g in structure.blocks if g.name == key[6:])
        picked = _layer_columns(structure, block.layers)
    elif key.startswith("kind:"):
        kind = key[5:]
        picked = _layer_columns(
            structure, [i for i, info in enumerate(structure.layers) if info.kind == kind]
        )
    elif key == OVERVIEW and structure.blocks:
        picked = depth_columns(structure, max_columns=10_000)
    else:
        picked = _layer_columns(structure, range(len(structure.layers)))
    return _sample(picked, max_lines)


def _kind_choices(structure: Structure) -> list[tuple[str, str]]:
    kinds = dict.fromkeys(info.kind for info in structure.layers)
    if len(kinds) < 2:
        return []
    return [(f"Kind: {kind}", f"kind:{kind}") for kind in kinds]


def _layer_columns(structure: Structure, indices) -> Columns:
    indices = list(indices)
    return _columns(
        structure, [(i,) for i in indices], [structure.layers[i].short for i in indices], "layer"
    )


def _columns(structure: Structure, members, labels, unit: str) -> Columns:
    infos = structure.layers
    tooltips = tuple(
        infos[m[0]].tooltip if len(m) == 1 else f"{infos[m[0]].block or label}: {len(m)} layers"
        for m, label in zip(members, labels, strict=True)
    )
    norm = tuple(all(infos[i].kind == "norm" for i in m) for m in members)
    return Columns(tuple(labels), tooltips, tuple(tuple(m) for m in members), norm, unit)


def _sample(columns: Columns, n: int) -> Columns:
    """At most ``n`` positions, evenly spaced, the first and the last always kept."""
    if len(columns) <= n:
        return columns
    keep = np.unique(np.rint(np.linspace(0, len(columns) - 1, n)).astype(int))
    return Columns(
        *(tuple(getattr(columns, f)[i] for i in keep) for f in ("labels", "tooltips")),
        tuple(columns.members[i] for i in keep),
        tuple(columns.norm[i] for i in keep),
        columns.unit,
    )


def _merge(structure: Structure, columns: Columns, n: int) -> Columns:
    """Merge runs of neighbouring positions until at most ``n`` remain."""
    if len(columns) <= n:
        return columns
    bounds = np.linspace(0, len(columns), n + 1).astype(int)
    members = [
        tuple(i for m in columns.members[a:b] for i in m) for a, b in itertools.pairwise(bounds)
    ]
    labels = [columns.labels[a] for a in bounds[:-1]]
    merged = _columns(structure, members, labels, columns.unit)
    tooltips = tuple(
        f"{columns.labels[a]} … {columns.labels[b - 1]}" for a, b in itertools.pairwise(bounds)
    )
    return Columns(merged.labels, tooltips, merged.members, merged.norm, merged.unit)
