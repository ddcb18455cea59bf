"""The depth x step heat map of log10 gradient norm."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import bqplot as bq
import numpy as np

from ..diagnose.structure import layer_groups
from ..history import History
from ._data import heat_matrix
from ._depth import depth_columns
from ._figures import figure, step_axis, step_labels
from ._tick_labels import fit_rows

__all__ = ["HeatChart"]

_HEAT_TITLE = "log10 ‖g‖"


class HeatChart:
    """Depth x step heat map of log10 gradient norm, redrawn at most every ``min_interval`` s.

    Rows are blocks (or layers), at most 48; the colour range spans the finite values only,
    so missing gradients (drawn grey) never flatten it. Needs two rows and two steps.
    """

    def __init__(self, layers: Sequence[str], max_cells: int = 6000, min_interval: float = 1.0):
        self.max_cells, self.min_interval = max_cells, min_interval
        self._last_draw = -np.inf
        self.row_scale = bq.OrdinalScale(reverse=True)  # input at the top
        column_scale, self.color_scale = bq.LinearScale(), bq.ColorScale(scheme="viridis")
        self.map = bq.GridHeatMap(
            color=np.zeros((2, 0), np.float32),
            row=np.array([" ", "  "]),
            column=np.zeros(0, np.float32),
            scales={"row": self.row_scale, "column": column_scale, "color": self.color_scale},
            stroke=None,
            null_color="#9e9e9e",
            tooltip=bq.Tooltip(
                fields=["row", "column", "color"], formats=["", ",.0f", ".1f"],
                labels=["where", "from step", "log10 gradient norm"],
            ),
        )  # fmt: skip
        self.row_axis = bq.Axis(scale=self.row_scale, side="left")
        self.step_axis = step_axis(column_scale)
        # The colour range goes into the title: bqplot squeezes a colour bar beside the map
        # into a few pixels, its labels on top of each other.
        axes = [self.step_axis, self.row_axis]
        self.figure = figure([self.map], axes, "gw-heatmap", _HEAT_TITLE)
        self.figure.fig_margin = {**self.figure.fig_margin, "top": 40}  # title clear of row 1
        self.set_layers(layers)

    def set_layers(self, layers: Sequence[str], model: Any = None) -> None:
        """Show another run's layers as rows, with no column drawn yet."""
        self.layers = tuple(layers)
        self.columns = depth_columns(layer_groups(self.layers, model))
        with self.map.hold_sync():
            self.map.row, self.map.column = None, None  # validators compare them to color
            rows = _heat_rows(self.columns.labels)
            self.map.color = np.zeros((len(rows), 0), np.float32)
            self.map.row = rows
        self.figure.fig_margin = {**self.figure.fig_margin, "left": fit_rows(self.row_axis, rows)}
        self._last_draw = -np.inf

    def update(self, history: History, force: bool = False) -> bool:
        """Redraw unless the last redraw is too recent (``force`` skips the wait); True if drawn."""
        now = time.monotonic()
        s = history.series("grad_norm")
        # bqplot squeezes a single row or column out of the matrix and then rejects it.
        drawable = len(s) >= 2 and len(self.columns) >= 2
        if not drawable or (not force and now - self._last_draw < self.min_interval):
            return False
        max_columns = max(2, min(200, self.max_cells // len(self.columns)))
        columns, color = heat_matrix(s.steps, self.columns.norms(s.last), max_columns)
        finite = color[np.isfinite(color)]
        low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 0.0)
        high = max(high, low + 1e-3)
        with self.map.hold_sync(), self.color_scale.hold_sync():
            self.color_scale.min, self.color_scale.max = low, high
            self.map.column = None  # the validator checks the column count against the color
            self.map.color = color
            self.map.column = columns
        self.figure.title = f"{_HEAT_TITLE}: {low:.1f} (purple) to {high:.1f} (yellow)"
        step_labels(self.step_axis, s.steps)
        self._last_draw = now
        return True


def _heat_rows(labels: Sequence[str]) -> np.ndarray:
    """Row labels of the heat map; two blank rows before any layer is known, because
    bqplot's GridHeatMap model fails to initialise on a colour matrix with no row, and
    squeezes a single row away."""
    return np.array(labels if len(labels) >= 2 else [" ", "  "], dtype=str)
