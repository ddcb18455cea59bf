"""bqplot charts of a History, each built once and then updated in place.

Every chart has a ``figure`` to display and an ``update(history)`` that reads a snapshot and
assigns new float32 arrays to its marks inside ``hold_sync()``: no redraw, no ``clear_output``.
They read the same from 3 to 500 layers: the gradient chart draws at most 12 lines (blocks,
or evenly spaced layers) over a band of the spread of all layers; the depth charts put blocks
along x; tick labels are thinned so that no two touch.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from typing import Any

import bqplot as bq
import ipywidgets as w
import numpy as np
from ipywidgets import Layout

from ..diagnose.structure import layer_groups
from ..history import History
from ._data import FLOOR, depth_colors, positive, spread_band, typical
from ._depth import OVERVIEW, Columns, choices, depth_columns, select
from ._figures import figure, key_html, log_axis, set_log_domain, step_axis, step_labels
from ._tick_labels import depth_axis
from .heatmap import HeatChart

__all__ = ["FlowChart", "GradChart", "HeatChart", "figure", "key_html", "set_log_domain"]

_HEALTHY = "#2ca02c"
_FLAGGED = "#d62728"
_PROFILE = "#3a8fd8"  # mid blue: readable on a white page and on JupyterLab's dark theme
_NORMS = "#b07cd8"
_SPREAD = "#8c8c8c"
_MAX_LINES = 12


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
        self.fits_steps = x_scale is None
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
        # The tooltip is the line's label, rewritten at each update in words (bqplot's line
        # tooltips know the line, not the point under the mouse).
        self.lines = bq.Lines(
            x=empty, y=empty, scales=scales, stroke_width=1.5,
            tooltip=bq.Tooltip(fields=["name"], labels=[""]), display_legend=False,
        )  # fmt: skip
        self.x_axis = step_axis(self.x_scale)
        axes = [self.x_axis, log_axis(self.y_scale)]
        self.figure = figure([self.band, self.lines], axes, "gw-grad-chart", title, height)
        self.menu = w.Dropdown(layout=Layout(width="190px"))
        self.menu.add_class("gw-grad-view")
        self.key = w.HTML(layout=Layout(flex="1 1 260px"))
        self.key.add_class("gw-grad-key")
        # The key wraps under the menu when both do not fit on one line.
        bar = w.HBox(
            [self.menu, self.key], layout=Layout(align_items="center", flex_flow="row wrap")
        )
        self.widget = w.VBox([bar, self.figure]) if legend else self.figure
        self.set_layers(layers)
        self.menu.observe(self._on_menu, names="value")

    def set_layers(self, layers: Sequence[str], model: Any = None) -> None:
        """Show another run's layers (``model`` adds module types): overview, lines cleared."""
        with self._lock:
            self.layers = tuple(layers)
            self.structure = layer_groups(self.layers, model)
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
                self.lines.labels = line_words(self.columns, y, int(s.steps[-1]))
                self.band.x, self.band.y = x, band
            if self.fits_steps:  # on a shared step scale the owner labels every chart alike
                step_labels(self.x_axis, s.steps)
        if self.fits_scale:  # a chart on shared scales leaves them to their owner
            set_log_domain(self.y_scale, y, band)


def _key_html(columns: Columns, colours: list[str], n_layers: int) -> str:
    """The gradient chart's key: every line's name in its colour, input first, and the band."""
    if not len(columns):
        return ""
    lines = key_html(list(zip(columns.labels, colours, strict=True)), glyph="■")
    band = key_html([(f"spread of all {n_layers} layers", _SPREAD)], glyph="▇")
    order = '<small style="white-space:nowrap">(input → output: blue → red)</small>'
    return f"{lines} · {band} {order}"


def line_words(columns: Columns, y: np.ndarray, step: int) -> list[str]:
    """A tooltip per line: which block or layer, where along depth, its latest value."""
    n = len(columns)
    words = []
    for i, (label, row) in enumerate(zip(columns.labels, y, strict=True)):
        last = float(row[-1]) if len(row) else FLOOR
        value = f"gradient norm {last:.2e}" if last > FLOOR * 1.01 else "no gradient"
        words.append(f"{label} ({_ordinal(i + 1)} of {n} from the input): {value} at step {step:,}")
    return words


def _ordinal(k: int) -> str:
    suffix = "th" if 10 <= k % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(k % 10, "th")
    return f"{k}{suffix}"


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
        # Hovering a point names the block or layer in full (type and size with a model).
        tooltip = bq.Tooltip(
            fields=["name", "y"], formats=["", ".2e"], labels=["", "gradient norm (latest step)"]
        )
        self.profile = bq.Lines(x=no_x, y=no_y, scales=scales, colors=[_PROFILE])
        self.points = bq.Scatter(
            x=no_x, y=no_y, scales=scales, colors=[_PROFILE], default_size=24,
            display_names=False, tooltip=tooltip,
        )  # fmt: skip
        # Points, not a line: a norm layer's gain is not on the weights' depth trend, and a
        # one-point Lines mark is drawn at y = NaN by bqplot.
        self.norms = bq.Scatter(
            x=no_x, y=no_y, scales=scales, marker="square", default_size=36, colors=[_NORMS],
            display_names=False, tooltip=tooltip,
        )  # fmt: skip
        self.flagged = bq.Scatter(x=no_x, y=no_y, scales=scales, colors=[_FLAGGED])
        self.x_axis = bq.Axis(scale=self.x_scale)
        axes = [self.x_axis, log_axis(self.y_scale)]
        marks = [self.range, self.profile, self.points, self.norms, self.flagged]
        self.figure = figure(marks, axes, "gw-flow-chart", "Gradient flow ‖g‖ (latest step)")
        self.set_layers(layers)

    def set_layers(self, layers: Sequence[str], model: Any = None) -> None:
        """Show another run's layers along the x axis (``model`` adds module types and
        parameter counts to the tooltips), with nothing drawn yet."""
        self.layers = tuple(layers)
        self.columns = depth_columns(layer_groups(self.layers, model))
        labels = np.array(self.columns.labels, dtype=str)
        weights, norms = self._split(labels)
        tips_weights, tips_norms = self._split(np.array(self.columns.tooltips, dtype=str))
        # Scale and marks are separate messages: the domain holds the old and the new layers
        # until every mark has its new x, so the browser never places a point off the domain.
        old = list(self.x_scale.domain or ())
        self.x_scale.domain = old + [label for label in labels if label not in set(old)]
        marks = (self.profile, self.range, self.points, self.norms, self.flagged)
        with contextlib.ExitStack() as held:  # each mark's x and y in one message
            for mark in marks:
                held.enter_context(mark.hold_sync())
            # y must match x in length at every moment the browser may see
            self.range.x, self.range.y = labels, np.ones((2, len(labels)), np.float32)
            self.profile.x, self.profile.y = weights, np.ones(len(weights), np.float32)
            self.points.x, self.points.y = weights, np.ones(len(weights), np.float32)
            self.points.names = tips_weights
            self.norms.x, self.norms.y = norms, np.ones(len(norms), np.float32)
            self.norms.names = tips_norms
            self.flagged.x, self.flagged.y = labels[:0], np.zeros(0, np.float32)
        self.x_scale.domain = list(labels)
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
            self.profile.y, self.points.y, self.norms.y = weights, weights, norms
            self.range.y = band
            self.flagged.x, self.flagged.y = labels[hit], latest[hit]
        set_log_domain(self.y_scale, latest, band)
