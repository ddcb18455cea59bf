"""Pure numpy helpers that turn History series into what the charts draw (no widgets here)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "FLOOR",
    "decimate_minmax",
    "depth_colors",
    "heat_matrix",
    "log_domain",
    "log_ticks",
    "ordinal_num_ticks",
    "positive",
    "spread_band",
    "step_ticks",
    "thin_every",
    "typical",
]

FLOOR = 1e-12  # log scales cannot draw 0 or NaN ("no gradient"): they sit on this floor

# Blue (input) to orange-red (output) at middle lightness: every line stays visible on a
# white page and on JupyterLab's dark theme (viridis' dark purple vanishes on black).
_ANCHORS = np.array(
    [
        (0x3A, 0x6E, 0xD8),
        (0x1F, 0x9E, 0xB0),
        (0x3B, 0xAE, 0x5E),
        (0xB5, 0xA7, 0x1E),
        (0xF0, 0x8A, 0x24),
        (0xE0, 0x4A, 0x3A),
    ],
    dtype=float,
)


def depth_colors(n: int) -> list[str]:
    """``n`` hex colours along depth: blue for the input layer, through green, to red."""
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
    values = np.asarray(values, np.float32)
    # No gradient (NaN, 0) stays NaN: a floor of 1e-12 would stretch the colour range over
    # nine empty decades and paint every real value the same colour.
    logs = np.log10(np.where(np.isfinite(values) & (values > FLOOR), values, np.nan))
    present = np.isfinite(logs)
    counts = np.add.reduceat(present, starts, axis=0)
    sums = np.add.reduceat(np.where(present, logs, 0.0), starts, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return steps[starts].astype(np.float32), np.ascontiguousarray(means.T, dtype=np.float32)


def log_domain(*arrays: np.ndarray) -> tuple[float, float]:
    """(min, max) of the finite values above ``FLOOR`` in ``arrays``, never a zero-width range.

    A constant series on an auto scale can freeze a bqplot mark (bqplot#1071), so the
    charts set their domains from here.
    """
    finite = [a[np.isfinite(a) & (a > FLOOR)] for a in arrays if np.size(a)]
    values = np.concatenate([f.ravel() for f in finite]) if finite else np.zeros(0)
    if values.size == 0:
        return FLOOR, 1.0
    low, high = float(values.min()), float(values.max())
    return (low / 10, high * 10) if low == high else (low, high)


def log_ticks(low: float, high: float, max_ticks: int = 5) -> np.ndarray:
    """Powers of ten inside ``[low, high]``, every k-th decade so at most ``max_ticks``.

    With fewer than two decades inside, 1-2-5 steps are added, so an axis always shows two
    or more labels and never the crowded 1..9 ticks of a log axis.
    """
    lo_exp, hi_exp = int(np.ceil(np.log10(low) - 1e-9)), int(np.floor(np.log10(high) + 1e-9))
    every = max(1, -(-(hi_exp - lo_exp + 1) // max_ticks))
    ticks = 10.0 ** np.arange(lo_exp, hi_exp + 1, every)
    if len(ticks) < 2:
        mantissas = np.array([1.0, 2.0, 5.0])
        candidates = (mantissas[None] * 10.0 ** np.arange(lo_exp - 1, hi_exp + 1)[:, None]).ravel()
        ticks = candidates[(candidates >= low * (1 - 1e-6)) & (candidates <= high * (1 + 1e-6))]
    return ticks


def step_ticks(first: float, last: float, max_ticks: int = 5) -> np.ndarray:
    """Whole steps 1, 2 or 5 times a power of ten apart inside ``[first, last]``, at most
    ``max_ticks`` (d3 draws ten, which overlap in a narrow chart once steps reach 100)."""
    span = max(float(last) - float(first), 1.0)
    raw = span / max(max_ticks - 1, 1)
    power = 10.0 ** np.floor(np.log10(raw))
    spacing = max(1.0, next(m * power for m in (1, 2, 5, 10) if m * power >= raw))
    return np.arange(np.ceil(first / spacing) * spacing, last + 1e-9, spacing)


def thin_every(
    labels: Sequence[str], length_px: float, char_px: float = 7.0, gap_px: float = 12.0
) -> int:
    """Keep every k-th of ``labels`` so that they fit side by side in ``length_px``: k.

    Each label needs its text width plus a gap; the longest label sets the spacing, so no
    two kept labels can touch whatever their lengths.
    """
    if not labels:
        return 1
    need = max(len(label) for label in labels) * char_px + gap_px
    return max(1, int(np.ceil(need * len(labels) / max(length_px, 1.0))))


def ordinal_num_ticks(n: int, every: int) -> int | None:
    """bqplot's ``num_ticks`` that makes an ordinal axis label every ``every``-th category
    or sparser (it keeps categories ``0, s, 2s...`` with ``s = n // (num_ticks - 1)``);
    None to label them all."""
    return None if every <= 1 else max(2, n // every + 1)


def _groups(n: int, max_points: int) -> np.ndarray:
    """Start index of each run of neighbouring buckets, at most ``max_points`` runs."""
    return np.arange(0, n, max(1, -(-n // max_points)))


def typical(steps: np.ndarray, last: np.ndarray, max_points: int) -> tuple[np.ndarray, np.ndarray]:
    """The typical value of each series over each run of buckets: the median of the run's
    first, middle and last ``last`` value.

    A line through bucket minima and maxima zigzags over decades once a run is long; a
    median follows what the series does while one spike cannot move it (the spikes go to a
    band instead). Three values, not the whole run: a full median costs 15 ms at 500 layers.
    NaN ("no gradient") is skipped; a run with no value stays NaN.

    Returns ``x`` ``(P,)`` (the last step of each run) and ``y`` ``(W, P)``, both float32.
    """
    starts = _groups(len(steps), max_points)
    ends = np.append(starts[1:], len(steps)) - 1
    a, b, c = (last[i] for i in (starts, (starts + ends) // 2, ends))
    med = np.fmax(np.fmin(a, b), np.fmin(np.fmax(a, b), c))
    return steps[ends].astype(np.float32), np.ascontiguousarray(med.T, dtype=np.float32)


def spread_band(steps: np.ndarray, lo: np.ndarray, hi: np.ndarray, max_points: int) -> np.ndarray:
    """``(2, P)`` float32: smallest ``lo`` and largest ``hi`` over all series per run of buckets
    (on the same runs as :func:`typical`), so every spike of every layer stays visible."""
    starts = _groups(len(steps), max_points)
    low = np.minimum.reduceat(positive(lo).min(axis=1), starts)
    high_values = np.asarray(hi, np.float32)
    high_values = np.where(np.isfinite(high_values), high_values, np.float32(FLOOR))
    high = np.maximum.reduceat(high_values.max(axis=1), starts)
    return np.stack([low, positive(high)]).astype(np.float32)
