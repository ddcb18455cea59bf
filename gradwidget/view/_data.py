"""Pure numpy helpers that turn History series into what the charts draw (no widgets here)."""

from __future__ import annotations

import numpy as np

__all__ = ["FLOOR", "decimate_minmax", "depth_colors", "heat_matrix", "log_domain", "positive"]

FLOOR = 1e-12  # log scales cannot draw 0 or NaN ("no gradient"): they sit on this floor

# Anchors of the viridis map, cut before its pale yellow end, which vanishes on white.
_ANCHORS = np.array(
    [
        (0x44, 0x01, 0x54),
        (0x47, 0x2C, 0x7A),
        (0x3B, 0x51, 0x8B),
        (0x2C, 0x71, 0x8E),
        (0x21, 0x90, 0x8D),
        (0x27, 0xAD, 0x81),
        (0x5C, 0xC8, 0x63),
        (0xAA, 0xDC, 0x32),
    ],
    dtype=float,
)


def depth_colors(n: int) -> list[str]:
    """``n`` hex colours of a sequential map, dark for the input layer, light for the output."""
    where = np.linspace(0.0, len(_ANCHORS) - 1, n) if n > 1 else np.zeros(n)
    rgb = np.stack([np.interp(where, np.arange(len(_ANCHORS)), _ANCHORS[:, c]) for c in range(3)])
    return ["#{:02x}{:02x}{:02x}".format(*col) for col in np.rint(rgb.T).astype(int)]


def positive(values: np.ndarray) -> np.ndarray:
    """float32 copy with non-finite, zero and tiny values put on ``FLOOR``.

    Non-finite gradients are reported by the diagnosis (``non_finite``); a log axis cannot
    draw them, and an infinite domain would flatten every other line.
    """
    out = np.asarray(values, np.float32)
    return np.where(np.isfinite(out) & (out > FLOOR), out, np.float32(FLOOR))


def decimate_minmax(
    steps: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_points: int
) -> tuple[np.ndarray, np.ndarray]:
    """Downsample bucketed series to at most ``max_points`` points per line, keeping extremes.

    Parameters
    ----------
    steps : numpy.ndarray
        ``(T,)`` step of each bucket.
    lo, hi : numpy.ndarray
        ``(T, W)`` smallest and largest value of each bucket.
    max_points : int
        Points per line at most (even, at least 2).

    Returns
    -------
    x : numpy.ndarray
        ``(P,)`` float32 steps, non-decreasing.
    y : numpy.ndarray
        ``(W, P)`` float32 values: for each group of neighbouring buckets its minimum and its
        maximum, in the order they occurred, so a spike of one step is still drawn.
    """
    n_groups = max(1, max_points // 2)
    size = max(1, -(-len(steps) // n_groups))  # ceil: buckets per group
    low, high = _grouped(lo, size, np.inf), _grouped(hi, size, -np.inf)
    low_first = low.argmin(axis=1) <= high.argmax(axis=1)
    lo_min, hi_max = _unfill(low.min(axis=1), np.inf), _unfill(high.max(axis=1), -np.inf)
    first = np.where(low_first, lo_min, hi_max)
    second = np.where(low_first, hi_max, lo_min)
    starts = np.arange(0, len(steps), size)
    ends = np.minimum(starts + size, len(steps)) - 1
    x = np.column_stack([steps[starts], steps[ends]]).ravel()
    y = np.stack([first, second], axis=1).reshape(-1, lo.shape[1])
    return x.astype(np.float32), np.ascontiguousarray(y.T, dtype=np.float32)


def _grouped(values: np.ndarray, size: int, fill: float) -> np.ndarray:
    """``(G, size, W)`` view of consecutive rows; NaN and the ragged tail become ``fill``."""
    pad = np.full(((-len(values)) % size, values.shape[1]), fill, values.dtype)
    rows = np.concatenate([np.where(np.isnan(values), fill, values), pad])
    return rows.reshape(-1, size, values.shape[1])


def _unfill(extremes: np.ndarray, fill: float) -> np.ndarray:
    """A group with no value at all (all NaN) comes back as NaN, not as the fill value."""
    return np.where(extremes == fill, np.nan, extremes)


def heat_matrix(
    steps: np.ndarray, values: np.ndarray, max_columns: int
) -> tuple[np.ndarray, np.ndarray]:
    """Layer x step matrix of log10 values, averaged over groups to at most ``max_columns``.

    Returns
    -------
    columns : numpy.ndarray
        ``(C,)`` float32 first step of each column.
    color : numpy.ndarray
        ``(W, C)`` float32 mean of ``log10(positive(values))`` over each column's steps.
    """
    size = max(1, -(-len(steps) // max_columns))
    starts = np.arange(0, len(steps), size)
    logs = np.log10(positive(values))
    counts = np.diff(np.append(starts, len(steps)))[:, None]
    means = np.add.reduceat(logs, starts, axis=0) / counts
    return steps[starts].astype(np.float32), np.ascontiguousarray(means.T, dtype=np.float32)


def log_domain(*arrays: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values above ``FLOOR`` in ``arrays``, never a zero-width range.

    A constant series on an auto scale can freeze a bqplot mark (bqplot#1071), so the
    charts set their domains from here.
    """
    finite = [a[np.isfinite(a) & (a > FLOOR)] for a in arrays if np.size(a)]
    values = np.concatenate(finite) if finite else np.zeros(0)
    if values.size == 0:
        return FLOOR, 1.0
    low, high = float(values.min()), float(values.max())
    return (low / 10, high * 10) if low == high else (low, high)
