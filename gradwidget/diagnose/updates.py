"""The rule on update-to-weight ratios: layers that barely move, or are thrown around.

``update_ratio`` is ||delta w|| / ||w|| of one optimizer step per layer; a rule of thumb puts
it near ``1e-3``. A layer two orders of magnitude below the last layer learns a hundred times
slower than it; a tenth of the weights changed in one step is no longer a small step.
"""

from __future__ import annotations

import numpy as np

from ..history import History
from ._text import listing
from .findings import Finding, Thresholds, make_finding
from .windows import last_step, window_medians

__all__ = ["uneven_updates"]


def uneven_updates(history: History, t: Thresholds) -> Finding | None:
    """Early layers updating ``update_gap`` times less than the last, or any above
    ``update_high``, over the window."""
    ratios = window_medians(history.series("update_ratio"), last_step(history), t)
    # A ratio of exactly 0 is a layer without gradient (frozen): nothing to judge.
    judged = np.flatnonzero(np.isfinite(ratios) & (ratios > 0))
    if judged.size < 2:
        return None
    last = ratios[judged[-1]]
    slow = np.isfinite(ratios) & (ratios > 0) & (ratios < t.update_gap * last)
    # Ratios are stored as float32 (0.1 -> 0.10000000149): compare at that precision.
    wild = np.isfinite(ratios) & (ratios > np.float32(t.update_high))
    if not (slow.any() or wild.any()):
        return None
    parts = []
    if slow.any():
        parts.append(
            f"these layers update less than {t.update_gap:g} times the last layer's ratio "
            f"({last:.1e}), so they learn orders of magnitude slower: "
            f"{listing(history, slow, ratios, '.1e')}"
        )
    if wild.any():
        parts.append(
            f"these change more than {t.update_high:.0%} of their weights in one step: "
            f"{listing(history, wild, ratios, '.1e')}"
        )
    message = (
        "Update sizes are uneven (||delta w|| / ||w|| per step, median over the window; about "
        f"1e-3 is customary): {'; '.join(parts)}. Adam scales every weight's step to its own "
        "gradient history, so every layer moves at a similar relative pace; BatchNorm and He "
        "init keep each layer's gradient at the scale of its weights."
    )
    slowest = float(np.nanmin(np.where(ratios > 0, ratios, np.nan)[judged]))
    evidence = {
        "slowest_ratio": slowest,
        "last_ratio": float(last),
        "gap": slowest / float(last),
        "largest_ratio": float(np.nanmax(ratios[judged])),
        "layers_affected": float((slow | wild).sum()),
    }
    return make_finding("update_ratio", history, slow | wild, evidence, message)
