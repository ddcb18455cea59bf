"""bqplot charts of a History, each built once and then updated in place.

Every chart has a ``figure`` to display and an ``update(history)`` that reads a snapshot and
assigns new float32 arrays to its marks inside ``hold_sync()``: no redraw, no ``clear_output``.
Lines get at most a few hundred points (min/max-aware decimation) so the browser keeps up.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import bqplot as bq
import numpy as np
from ipywidgets import Layout

from ..history import History
from ._data import decimate_minmax, depth_colors, heat_matrix, log_domain, positive

__all__ = ["FlowChart", "GradChart", "HeatChart", "figure", "set_log_domain"]

_HEALTHY = "#2ca02c"
_FLAGGED = "#d62728"


def figure(marks: list, axes: list, css: str, title: str, height: str = "260px") -> bq.Figure:
    """A compact figure with a stable CSS class for tests and styling."""
    fig = bq.Figure(
        marks=marks,
        axes=axes,
        title=title,
        fig_margin={"top": 30, "bottom": 35, "left": 60, "right": 20},
        layout=Layout(height=height, width="100%", min_width="260px"),
        animation_duration=0,
    )
    fig.add_class(css)
    return fig


def set_log_domain(scale: bq.LogScale, *arrays: np.ndarray) -> None:
    """Fix ``scale``'s domain to the values in ``arrays`` (auto domains can freeze a mark)."""
    low, high = log_domain(*arrays)
    with scale.hold_sync():
        scale.min, scale.max = low, high


class GradChart:
    """Gradient norm of each layer over steps: log y, one line per layer coloured by depth.

    Parameters
    ----------
    layers : sequence of str
        Layer names, input to output.
    x_scale, y_scale : bqplot scales, optional
        Pass the same scale objects to several charts to draw them on shared axes; a chart
        that makes its own y scale also fits that scale's domain to its data.
    max_points : int
        Points per line at most.
    legend : bool
        Show the layer names in a legend (they are always in the tooltip).
    """

    def __init__(
        self,
        layers: Sequence[str] = (),
        *,
        x_scale: bq.Scale | None = None,
        y_scale: bq.LogScale | None = None,
        max_points: int = 300,
        legend: bool = True,
        title: str = "Gradient norm per layer",
        height: str = "260px",
    ) -> None:
        self.layers = tuple(layers)
        self.fits_scale = y_scale is None
        self.x_scale = x_scale or bq.LinearScale()
        self.y_scale = y_scale or bq.LogScale()
        self.max_points = max_points
        self.lines = bq.Lines(
            x=np.zeros(0, np.float32),
            y=np.zeros(0, np.float32),
            scales={"x": self.x_scale, "y": self.y_scale},
            labels=list(layers),
            colors=depth_colors(len(layers)),
            display_legend=legend,
            stroke_width=1.5,
            tooltip=bq.Tooltip(fields=["name"]),
        )
        axes = [
            bq.Axis(scale=self.x_scale, label="step"),
            bq.Axis(scale=self.y_scale, side="left", tick_format=".0e", label="‖g‖"),
        ]
        self.figure = figure([self.lines], axes, "gw-grad-chart", title, height)

    def set_layers(self, layers: Sequence[str]) -> None:
        """Show another run's layers: relabel and recolour the lines in place, clear them."""
        self.layers = tuple(layers)
        empty = np.zeros(0, np.float32)
        with self.lines.hold_sync():
            self.lines.x, self.lines.y = empty, empty
            self.lines.labels, self.lines.colors = list(layers), depth_colors(len(layers))

    def update(self, history: History) -> None:
        """Draw the ``grad_norm`` series of ``history`` (needs two points to draw a line)."""
        s = history.series("grad_norm")
        if len(s) < 2:
            return
        x, y = decimate_minmax(s.steps, positive(s.lo), positive(s.hi), self.max_points)
        with self.lines.hold_sync():
            self.lines.x, self.lines.y = x, y
        if self.fits_scale:
            set_log_domain(self.y_scale, y)


class FlowChart:
    """Gradient flow: each layer's latest gradient norm against depth, over a healthy band.

    The band spans ``band[0]`` to ``band[1]`` times the output layer's norm (the diagnosis
    thresholds for vanishing and exploding); layers the diagnosis names are marked red.
    """

    def __init__(self, layers: Sequence[str], band: tuple[float, float]) -> None:
        self.layers = np.array(layers, dtype=str)
        self.band = band
        x_scale, self.y_scale = bq.OrdinalScale(), bq.LogScale()
        scales = {"x": x_scale, "y": self.y_scale}
        self.range = bq.Lines(
            x=self.layers,
            y=np.zeros((2, 0), np.float32),
            scales=scales,
            fill="between",
            fill_colors=[_HEALTHY],
            fill_opacities=[0.15],
            colors=[_HEALTHY, _HEALTHY],
            stroke_width=0.5,
            labels=["healthy range"],
        )
        self.profile = bq.Lines(
            x=self.layers,
            y=np.zeros(0, np.float32),
            scales=scales,
            marker="circle",
            colors=["#333"],
        )
        self.flagged = bq.Scatter(
            x=np.zeros(0, self.layers.dtype), y=np.zeros(0, np.float32), scales=scales
        )
        self.flagged.colors = [_FLAGGED]
        axes = [
            bq.Axis(scale=x_scale, label="layer (input → output)"),
            bq.Axis(scale=self.y_scale, side="left", tick_format=".0e", label="‖g‖"),
        ]
        marks = [self.range, self.profile, self.flagged]
        self.figure = figure(marks, axes, "gw-flow-chart", "Gradient flow (latest step)")

    def set_layers(self, layers: Sequence[str]) -> None:
        """Show another run's layers along the x axis, with nothing drawn yet."""
        self.layers = np.array(layers, dtype=str)
        with self.profile.hold_sync(), self.range.hold_sync(), self.flagged.hold_sync():
            # y must match x in length at every moment the browser may see
            self.range.x, self.range.y = self.layers, np.ones((2, len(layers)), np.float32)
            self.profile.x, self.profile.y = self.layers, np.ones(len(layers), np.float32)
            self.flagged.x, self.flagged.y = self.layers[:0], np.zeros(0, np.float32)

    def update(self, history: History, flagged: Sequence[str] = ()) -> None:
        """Draw the newest ``grad_norm`` row and mark the layers in ``flagged``."""
        s = history.series("grad_norm")
        if len(s) == 0:
            return
        latest = positive(s.last[-1])
        band = np.outer(self.band, np.full(len(latest), latest[-1], np.float32))
        hit = np.isin(self.layers, list(flagged))
        with self.profile.hold_sync(), self.range.hold_sync(), self.flagged.hold_sync():
            self.profile.y = latest
            self.range.y = band.astype(np.float32)
            self.flagged.x, self.flagged.y = self.layers[hit], latest[hit]
        set_log_domain(self.y_scale, latest, band)


class HeatChart:
    """Layer x step heat map of log10 gradient norm, redrawn at most every ``min_interval`` s.

    Needs two layers and two steps (a one-layer model has no flow to map).
    """

    def __init__(self, layers: Sequence[str], max_columns: int = 200, min_interval: float = 1.0):
        self.max_columns, self.min_interval = max_columns, min_interval
        self._last_draw = -np.inf
        rows = _heat_rows(layers)
        row_scale = bq.OrdinalScale(reverse=True)  # input layer at the top
        column_scale, color_scale = bq.LinearScale(), bq.ColorScale(scheme="viridis")
        self.map = bq.GridHeatMap(
            color=np.zeros((len(rows), 0), np.float32),
            row=rows,
            column=np.zeros(0, np.float32),
            scales={"row": row_scale, "column": column_scale, "color": color_scale},
            stroke=None,
        )
        axes = [
            bq.Axis(scale=column_scale, label="step"),
            bq.Axis(scale=row_scale, side="left"),
            bq.ColorAxis(scale=color_scale, label="log10 ‖g‖", side="right"),
        ]
        self.figure = figure([self.map], axes, "gw-heatmap", "log10 gradient norm")

    def set_layers(self, layers: Sequence[str]) -> None:
        """Show another run's layers as rows, with no column drawn yet."""
        with self.map.hold_sync():
            self.map.row, self.map.column = None, None  # validators compare them to color
            rows = _heat_rows(layers)
            self.map.color = np.zeros((len(rows), 0), np.float32)
            self.map.row = rows
        self._last_draw = -np.inf

    def update(self, history: History, force: bool = False) -> bool:
        """Redraw unless the last redraw is too recent (``force`` skips the wait); True if drawn."""
        now = time.monotonic()
        s = history.series("grad_norm")
        # bqplot squeezes a single row or column out of the matrix and then rejects it.
        drawable = len(s) >= 2 and s.last.shape[1] >= 2
        if not drawable or (not force and now - self._last_draw < self.min_interval):
            return False
        columns, color = heat_matrix(s.steps, s.last, self.max_columns)
        with self.map.hold_sync():
            self.map.column = None  # the validator checks the column count against the color
            self.map.color = color
            self.map.column = columns
        self._last_draw = now
        return True


def _heat_rows(layers: Sequence[str]) -> np.ndarray:
    """Row labels of the heat map; two blank rows before any layer is known, because
    bqplot's GridHeatMap model fails to initialise on a colour matrix with no row, and
    squeezes a single row away."""
    return np.array(layers or [" ", "  "], dtype=str)
