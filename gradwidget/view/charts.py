"""bqplot charts of a History, each built once and then updated in place.

Every chart has a ``figure`` to display and an ``update(history)`` that reads a snapshot and
assigns new float32 arrays to its marks inside ``hold_sync()``: no redraw, no ``clear_output``.
They read the same from 3 to 500 layers: the gradient chart draws at most 12 lines (blocks,
or evenly spaced layers) over a band of the spread of all layers; the depth charts put blocks
along x; tick labels are thinned so that no two touch.
"""

from __future__ import annotations

import html
import threading
import time
import weakref
from collections.abc import Sequence

import bqplot as bq
import ipywidgets as w
import numpy as np
from ipywidgets import Layout

from ..history import History
from ..structure import layer_groups
from ._data import (
    depth_colors,
    heat_matrix,
    log_domain,
    log_ticks,
    positive,
    spread_band,
    step_ticks,
    typical,
)
from ._depth import OVERVIEW, Columns, choices, depth_columns, select
from ._ticks import depth_axis, fit_rows

__all__ = ["FlowChart", "GradChart", "HeatChart", "figure", "key_html", "set_log_domain"]

_HEALTHY = "#2ca02c"
_FLAGGED = "#d62728"
_PROFILE = "#3a8fd8"  # mid blue: readable on a white page and on JupyterLab's dark theme
_NORMS = "#b07cd8"
_SPREAD = "#8c8c8c"
_MAX_LINES = 12
_HEAT_TITLE = "log10 ‖g‖"
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


def _log_axis(scale: bq.LogScale) -> bq.Axis:
    # No axis label: the title names the quantity, and a label beside the ticks crowds them.
    return bq.Axis(scale=scale, side="left", tick_format=".0e", num_ticks=5)


class GradChart:
    """Gradient norm over steps, log y: at most 12 lines over a band of all layers' spread.

    Each line is a series' typical value (the median of its newest values over a few
    buckets), so a long run does not turn lines into a zigzag; the grey band spans the
    smallest to the largest norm of every layer, so a spike of any layer stays visible. With
    blocks the lines are blocks (L2 over each block); a menu drills into a block or a kind.

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
        Show the view menu and a colour key above the figure (never over the data); the
        names are always in the tooltip.
    """

    def __init__(
        self,
        layers: Sequence[str] = (),
        *,
        x_scale: bq.Scale | None = None,
        y_scale: bq.LogScale | None = None,
        max_points: int = 300,
        legend: bool = True,
        title: str = "Gradient norm ‖g‖",
        height: str = "240px",
    ) -> None:
        self.fits_scale = y_scale is None
        self.x_scale = x_scale or bq.LinearScale()
        self.y_scale = y_scale or bq.LogScale()
        self.max_points = max_points
        self._lock = threading.RLock()  # the menu (kernel thread) and the refresher both draw
        self._history: History | None = None
        scales = {"x": self.x_scale, "y": self.y_scale}
        empty = np.zeros(0, np.float32)
        self.band = bq.Lines(
            x=empty, y=np.zeros((2, 0), np.float32), scales=scales, fill="between",
            fill_colors=[_SPREAD], fill_opacities=[0.2], colors=[_SPREAD, _SPREAD],
            opacities=[0.5, 0.5], stroke_width=0.5, labels=["spread of all layers"],
        )  # fmt: skip
        self.lines = bq.Lines(
            x=empty, y=empty, scales=scales, stroke_width=1.5,
            tooltip=bq.Tooltip(fields=["name"]), display_legend=False,
        )  # fmt: skip
        self.x_axis = step_axis(self.x_scale)
        axes = [self.x_axis, _log_axis(self.y_scale)]
        self.figure = figure([self.band, self.lines], axes, "gw-grad-chart", title, height)
        self.menu = w.Dropdown(layout=Layout(width="190px"))
        self.menu.add_class("gw-grad-view")
        self.key = w.HTML(layout=Layout(flex="1 1 auto"))
        self.key.add_class("gw-grad-key")
        bar = w.HBox([self.menu, self.key], layout=Layout(align_items="center"))
        self.widget = w.VBox([bar, self.figure]) if legend else self.figure
        self.set_layers(layers)
        self.menu.observe(self._on_menu, names="value")

    def set_layers(self, layers: Sequence[str]) -> None:
        """Show another run's layers: back to the overview, lines cleared."""
        with self._lock:
            self.layers = tuple(layers)
            self.structure = layer_groups(self.layers)
            options = choices(self.structure)
            self.menu.options = options
            self.menu.value = OVERVIEW
            self.menu.layout.display = "none" if len(options) < 2 else ""
            self._history = None
            self._show(OVERVIEW)

    def _on_menu(self, change: dict) -> None:
        with self._lock:
            self._show(change["new"])
            if self._history is not None:
                self.update(self._history)

    def _show(self, key: str) -> None:
        self.columns: Columns = select(self.structure, key or OVERVIEW, _MAX_LINES)
        colours = depth_colors(len(self.columns))
        empty = np.zeros(0, np.float32)
        with self.lines.hold_sync(), self.band.hold_sync():
            self.lines.x, self.lines.y = empty, empty
            self.band.x, self.band.y = empty, np.zeros((2, 0), np.float32)
            self.lines.labels, self.lines.colors = list(self.columns.labels), colours
        self.key.value = _key_html(self.columns, colours, len(self.layers))

    def update(self, history: History) -> None:
        """Draw the ``grad_norm`` series of ``history`` (needs two points to draw a line)."""
        s = history.series("grad_norm")
        if len(s) < 2:
            return
        with self._lock:
            self._history = history
            x, per_layer = typical(s.steps, s.last, self.max_points)
            y = positive(self.columns.norms(per_layer.T).T)
            band = spread_band(s.steps, s.lo, s.hi, self.max_points)
            with self.lines.hold_sync(), self.band.hold_sync():
                self.lines.x, self.lines.y = x, y
                self.band.x, self.band.y = x, band
            step_labels(self.x_axis, s.steps)
        if self.fits_scale:  # a chart on shared scales leaves them to their owner
            set_log_domain(self.y_scale, y, band)


def key_html(items: Sequence[tuple[str, str]], glyph: str = "━", sep: str = " ") -> str:
    """A one-line colour key of (name, colour) items, shown beside a figure, not on its data."""
    parts = [f'<span style="color:{c}">{glyph}</span> {html.escape(n)}' for n, c in items]
    return f'<span style="font-size:12px">{sep.join(parts)}</span>'


def _key_html(columns: Columns, colours: list[str], n_layers: int) -> str:
    """The gradient chart's key: its first and last line, and the band."""
    if not len(columns):
        return ""
    ends = [(columns.labels[0], colours[0]), (columns.labels[-1], colours[-1])][: len(columns)]
    lines = key_html(ends, sep=" … " if len(columns) > 2 else " ")
    return f"{lines} {key_html([(f'all {n_layers} layers', _SPREAD)], glyph='▇')}"


class FlowChart:
    """Gradient flow: the latest gradient norm of each block (or layer) along depth, over a
    healthy band.

    The band spans ``band[0]`` to ``band[1]`` times the output's norm (the diagnosis
    thresholds for vanishing and exploding); positions holding a layer the diagnosis names
    are marked red. Normalisation layers standing alone are drawn as separate purple squares,
    so their gains do not make a sawtooth of the weights' profile.
    """

    def __init__(self, layers: Sequence[str], band: tuple[float, float]) -> None:
        self.band = band
        self.x_scale, self.y_scale = bq.OrdinalScale(), bq.LogScale()
        scales = {"x": self.x_scale, "y": self.y_scale}
        no_x, no_y = np.zeros(0, str), np.zeros(0, np.float32)
        self.range = bq.Lines(
            x=no_x, y=np.zeros((2, 0), np.float32), scales=scales, fill="between",
            fill_colors=[_HEALTHY], fill_opacities=[0.15], colors=[_HEALTHY, _HEALTHY],
            stroke_width=0.5, labels=["healthy range"],
        )  # fmt: skip
        tooltip = bq.Tooltip(fields=["x", "y"], formats=["", ".2e"])
        self.profile = bq.Lines(
            x=no_x, y=no_y, scales=scales, marker="circle", marker_size=24, colors=[_PROFILE],
            labels=["weights"], tooltip=tooltip,
        )  # fmt: skip
        # Points, not a line: a norm layer's gain is not on the weights' depth trend, and a
        # one-point Lines mark is drawn at y = NaN by bqplot.
        self.norms = bq.Scatter(
            x=no_x, y=no_y, scales=scales, marker="square", default_size=36, colors=[_NORMS],
            tooltip=tooltip,
        )  # fmt: skip
        self.flagged = bq.Scatter(x=no_x, y=no_y, scales=scales, colors=[_FLAGGED])
        self.x_axis = bq.Axis(scale=self.x_scale)
        axes = [self.x_axis, _log_axis(self.y_scale)]
        marks = [self.range, self.profile, self.norms, self.flagged]
        self.figure = figure(marks, axes, "gw-flow-chart", "Gradient flow ‖g‖ (latest step)")
        self.set_layers(layers)

    def set_layers(self, layers: Sequence[str]) -> None:
        """Show another run's layers along the x axis, with nothing drawn yet."""
        self.layers = tuple(layers)
        self.columns = depth_columns(layer_groups(self.layers))
        labels = np.array(self.columns.labels, dtype=str)
        weights, norms = self._split(labels)
        with self.profile.hold_sync(), self.range.hold_sync(), self.flagged.hold_sync():
            self.x_scale.domain = list(labels)
            # y must match x in length at every moment the browser may see
            self.range.x, self.range.y = labels, np.ones((2, len(labels)), np.float32)
            self.profile.x, self.profile.y = weights, np.ones(len(weights), np.float32)
            self.norms.x, self.norms.y = norms, np.ones(len(norms), np.float32)
            self.flagged.x, self.flagged.y = labels[:0], np.zeros(0, np.float32)
        depth_axis(self.x_axis, self.columns)

    def _split(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        is_norm = np.array(self.columns.norm, bool)
        if is_norm.all():  # only norms (or nothing): draw them as the profile
            is_norm = np.zeros_like(is_norm)
        return values[~is_norm], values[is_norm]

    def update(self, history: History, flagged: Sequence[str] = ()) -> None:
        """Draw the newest ``grad_norm`` row and mark the positions holding ``flagged``."""
        s = history.series("grad_norm")
        if len(s) == 0:
            return
        latest = positive(self.columns.norms(s.last[-1]))
        finite = latest[latest > np.float32(1e-12)]
        output = finite[-1] if finite.size else np.float32(1.0)
        band = np.outer(self.band, np.full(len(latest), output, np.float32)).astype(np.float32)
        names = set(flagged)
        hit = np.array(
            [any(self.layers[i] in names for i in m) for m in self.columns.members], bool
        )
        labels = np.array(self.columns.labels, dtype=str)
        weights, norms = self._split(latest)
        with self.profile.hold_sync(), self.range.hold_sync(), self.flagged.hold_sync():
            self.profile.y, self.norms.y = weights, norms
            self.range.y = band
            self.flagged.x, self.flagged.y = labels[hit], latest[hit]
        set_log_domain(self.y_scale, latest, band)


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
        )
        self.row_axis = bq.Axis(scale=self.row_scale, side="left")
        self.step_axis = step_axis(column_scale)
        # The colour range goes into the title: bqplot squeezes a colour bar beside the map
        # into a few pixels, its labels on top of each other.
        axes = [self.step_axis, self.row_axis]
        self.figure = figure([self.map], axes, "gw-heatmap", _HEAT_TITLE)
        self.figure.fig_margin = {**self.figure.fig_margin, "top": 40}  # title clear of row 1
        self.set_layers(layers)

    def set_layers(self, layers: Sequence[str]) -> None:
        """Show another run's layers as rows, with no column drawn yet."""
        self.layers = tuple(layers)
        self.columns = depth_columns(layer_groups(self.layers))
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
