"""Tick labels of the depth axes, thinned so that no two labels overlap at any layer count.

bqplot draws every category of an ordinal axis; with 75 layer names that is a black smear.
On an ordinal axis bqplot ignores ``tick_values`` and thins by ``num_ticks`` instead.
The charts sit in grid cells at least ``MIN_CHART_PX`` wide and ``HEIGHT_PX`` tall, so the
room of each axis is known in advance, and the labels kept are spaced to fit it.
"""

from __future__ import annotations

from collections.abc import Sequence

import bqplot as bq

from ._data import ordinal_num_ticks, thin_every
from ._depth import Columns

__all__ = ["MIN_CHART_PX", "depth_axis", "fit_rows"]

MIN_CHART_PX = 440  # the dashboard's grid never makes a chart narrower than this
_PLOT_WIDTH_PX = MIN_CHART_PX - 80  # less the figure's side margins
_PLOT_HEIGHT_PX = 240 - 65  # figure height less its top and bottom margins
_CHAR_PX = 6.5  # bqplot's tick font: short names measure 6 to 6.2 px a character
_ROW_PX = 16.0  # a horizontal label's height plus a gap


def depth_axis(axis: bq.Axis, columns: Columns) -> None:
    """Label an ordinal x axis of ``columns``: unit in the title, thinned tick labels."""
    with axis.hold_sync():
        axis.label = f"{columns.unit} (input → output)"
        every = thin_every(columns.labels, _PLOT_WIDTH_PX, _CHAR_PX, gap_px=8.0)
        axis.num_ticks = ordinal_num_ticks(len(columns), every)


def fit_rows(axis: bq.Axis, rows: Sequence[str]) -> int:
    """Thin the row labels of a vertical ordinal axis; the left margin they need, in px."""
    labels = [str(r) for r in rows]
    every = thin_every(labels, _PLOT_HEIGHT_PX, 0.0, gap_px=_ROW_PX)
    axis.num_ticks = ordinal_num_ticks(len(labels), every)
    return int(min(150, 16 + _CHAR_PX * max((len(label) for label in labels), default=1)))
