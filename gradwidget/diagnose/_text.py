"""Layer listings for findings' messages: a block whose every layer is affected is named once."""

from __future__ import annotations

import numpy as np

from ..history import History
from .structure import layer_groups

__all__ = ["listing"]


def listing(history: History, mask: np.ndarray, values: np.ndarray, fmt: str) -> str:
    """The layers in ``mask`` with their values; a block whose every layer is in ``mask`` is
    named once, as a block (a 12-block transformer would otherwise list 70 names)."""
    parts, named = [], set()
    for block in layer_groups(history.layers).blocks:
        rows = list(block.layers)
        if mask[rows].all():
            low, high = np.nanmin(values[rows]), np.nanmax(values[rows])
            text = f"block {block.short} (all {len(rows)} layers, {low:{fmt}} to {high:{fmt}})"
            parts.append((rows[0], text))
            named.update(rows)
    parts += [
        (i, f"{history.layers[i]} ({values[i]:{fmt}})")
        for i in np.flatnonzero(mask)
        if i not in named
    ]
    return ", ".join(text for _, text in sorted(parts))
