"""Pure numpy: the value ranges and label positions of the loss charts (no widgets here)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._data import log_ticks

__all__ = ["Range", "dodge", "loss_range", "nice_ticks"]

_SPIKE = 3.0  # linear axis: a top this many times the 95th percentile's span is a spike


@dataclass(frozen=True)
class Range:
    """An axis domain ``low``..``high`` (log or linear) and round ``ticks`` inside it."""

    low: float
    high: float
    log: bool
    ticks: np.ndarray

    def fraction(self, values: np.ndarray) -> np.ndarray:
        """Where ``values`` sit between the bottom (0) and the top (1) of the axis."""
        v = np.asarray(values, np.float64)
        if self.log:
            low, high = math.log10(self.low), math.log10(self.high)
            return (np.log10(np.maximum(v, 1e-300)) - low) / (high - low)
        return (v - self.low) / (self.high - self.low)

    def value(self, fractions: np.ndarray) -> np.ndarray:
        """The values at ``fractions`` of the axis height (inverse of :meth:`fraction`)."""
        f = np.asarray(fractions, np.float64)
        if self.log:
            low, high = math.log10(self.low), math.log10(self.high)
            return 10.0 ** (low + f * (high - low))
        return self.low + f * (self.high - self.low)


def loss_range(arrays: Sequence[np.ndarray]) -> Range:
    """A loss axis that tells runs apart: log when every loss is positive (one early spike
    then takes a decade, not nine tenths of the height), else linear from the lowest loss,
    its top cut at a spike. Never below the lowest loss; at least two round ticks."""
    values = np.concatenate([np.ravel(a) for a in arrays] or [np.zeros(0)]).astype(np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Range(0.0, 1.0, False, np.array([0.0, 0.5, 1.0]))
    low, high = float(values.min()), float(values.max())
    if low > 0:
        if high <= low * 1.05:  # flat: widen to a span that still shows two ticks
            low, high = low / 1.5, high * 1.5
        low, high = low / 1.05, high * 1.05  # the lowest loss sits just above the axis line
        # Under a decade, decade ticks leave one label or none: round linear steps instead.
        ticks = log_ticks(low, high) if high >= 10 * low else nice_ticks(low, high)
        return Range(low, high, True, ticks)
    typical_top = float(np.percentile(values, 95))
    if high - low > _SPIKE * max(typical_top - low, 1e-12):
        high = low + _SPIKE * (typical_top - low)
    high = max(high, low + 1e-6)
    pad = 0.03 * (high - low)
    return Range(low - pad, high + pad, False, nice_ticks(low, high))


def nice_ticks(low: float, high: float, max_ticks: int = 5) -> np.ndarray:
    """Round values 1, 2 or 5 times a power of ten apart inside ``[low, high]``."""
    raw = (high - low) / max(max_ticks - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    spacing = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    ticks = np.arange(math.ceil(low / spacing) * spacing, high + spacing * 1e-9, spacing)
    return np.round(ticks, max(0, -math.floor(math.log10(spacing)) + 1))


def dodge(fractions: np.ndarray, gap: float) -> np.ndarray:
    """Label heights (0 bottom, 1 top) moved apart to at least ``gap``, each as near its own
    value as the others allow, all inside [0, 1]; in the order given."""
    f = np.clip(np.asarray(fractions, np.float64), 0.0, 1.0)
    order = np.argsort(f, kind="stable")
    placed = f[order].copy()
    for i in range(1, len(placed)):  # push up from the bottom
        placed[i] = max(placed[i], placed[i - 1] + gap)
    overflow = placed[-1] - 1.0 if len(placed) else 0.0
    if overflow > 0:  # then down from the top, where the push ran past it
        placed[-1] = 1.0
        for i in range(len(placed) - 2, -1, -1):
            placed[i] = min(placed[i], placed[i + 1] - gap)
    out = np.empty_like(placed)
    out[order] = placed
    return out
