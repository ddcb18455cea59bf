"""Figure, axis and key helpers shared by the charts (bqplot, no data logic here)."""

from __future__ import annotations

import html
import weakref
from collections.abc import Sequence

import bqplot as bq
import numpy as np
from ipywidgets import Layout

from ._data import log_domain, log_ticks, step_ticks

__all__ = [
    "figure",
    "key_html",
    "log_axis",
    "set_log_domain",
    "set_ticks",
    "step_axis",
    "step_labels",
]

_LOG_AXES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # scale -> its log axes


def figure(
    marks: list, axes: list, css: str, title: str, height: str = "240px", left: int = 60
) -> bq.Figure:
    """A compact figure with a stable CSS class for tests and styling."""
    for axis in axes:
        if isinstance(axis.scale, bq.LogScale):
            _LOG_AXES.setdefault(axis.scale, []).append(axis)
    fig = bq.Figure(
        marks=marks,
        axes=axes,
        title=title,
        fig_margin={"top": 30, "bottom": 35, "left": left, "right": 20},
        layout=Layout(height=height, width="100%", min_width="260px"),
        animation_duration=0,
    )
    fig.add_class(css)
    return fig


def set_log_domain(scale: bq.LogScale, *arrays: np.ndarray) -> None:
    """Fix ``scale``'s domain to the values in ``arrays`` (auto domains can freeze a mark),
    and give its axes a few decade ticks (a log axis's own 1..9 ticks overlap)."""
    low, high = log_domain(*arrays)
    # Whole decades: the domain and its ticks then change rarely, not at every refresh.
    # (a float32 1e-6 reads 9.99e-7: the tolerance keeps it in its own decade)
    low = 10.0 ** np.floor(np.log10(low) + 1e-6)
    high = 10.0 ** np.ceil(np.log10(high) - 1e-6)
    with scale.hold_sync():
        scale.min, scale.max = float(low), float(high)
    ticks = log_ticks(low, high)
    for axis in _LOG_AXES.get(scale, ()):
        set_ticks(axis, ticks)


def set_ticks(axis: bq.Axis, ticks: np.ndarray) -> None:
    """Assign ``tick_values`` only when they change: an array trait syncs on every
    assignment, and axis updates racing a view being created can break it in the browser."""
    current = axis.tick_values
    if current is None or not np.array_equal(np.asarray(current), ticks):
        axis.tick_values = ticks


def step_axis(scale: bq.Scale) -> bq.Axis:
    """A step axis in SI units (``120k``) so that labels stay short; see :func:`step_labels`."""
    return bq.Axis(scale=scale, label="step", tick_format="~s")


def step_labels(axis: bq.Axis, steps: np.ndarray) -> None:
    """Label ``axis`` at five round steps or fewer within ``steps`` (its scale is left alone)."""
    if len(steps):
        set_ticks(axis, step_ticks(float(steps[0]), float(steps[-1])))


def log_axis(scale: bq.LogScale) -> bq.Axis:
    # No axis label: the title names the quantity, and a label beside the ticks crowds them.
    return bq.Axis(scale=scale, side="left", tick_format=".0e", num_ticks=5)


def key_html(items: Sequence[tuple[str, str]], glyph: str = "━", sep: str = " ") -> str:
    """A one-line colour key of (name, colour) items, shown beside a figure, not on its data."""
    # One item never breaks across lines; the key wraps between items.
    parts = [
        f'<span style="white-space:nowrap"><span style="color:{c}">{glyph}</span> '
        f"{html.escape(n)}</span>"
        for n, c in items
    ]
    return f'<span style="font-size:12px">{sep.join(parts)}</span>'
