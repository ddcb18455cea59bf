"""Update-to-weight ratio per block over time, with the customary 1e-3 guide.

‖Δθ‖ / ‖θ‖ says how fast each part of the network learns: around 1e-3 is the usual rule of
thumb, far below it a part barely moves, far above it the steps are too big. The recorder
samples it every ``act_every`` steps (``update_ratio`` with ``weight_norm``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import bqplot as bq
import ipywidgets as w
import numpy as np
from ipywidgets import Layout

from ..diagnose.structure import layer_groups
from ..history import History
from ._data import depth_colors, positive, typical
from ._depth import OVERVIEW, Columns, select
from ._empty import NotedFigure
from ._figures import figure, key_html, log_axis, set_log_domain, step_axis, step_labels

__all__ = ["GUIDE", "UpdateChart", "block_ratios"]

GUIDE = 1e-3
_GUIDE_COLOUR = "#8c8c8c"
_MAX_LINES = 12
_WAITING = (
    "No update ratios yet: they are measured every act_every steps, from the second sample on."
)


class UpdateChart:
    """‖Δθ‖/‖θ‖ of each block (or layer) over steps on a log axis, over a dashed 1e-3 guide
    (css ``gw-update-chart``); lines coloured input (blue) to output (red) like the gradients.

    Parameters
    ----------
    layers : sequence of str
        Layer names, input to output.
    max_points : int
        Points per line at most.
    min_interval : float
        Seconds between redraws at least: ratios are sampled every ``act_every`` steps, and
        reading them costs a copy of the series (6 MB at 500 layers).
    """

    def __init__(
        self, layers: Sequence[str] = (), max_points: int = 200, min_interval: float = 1.0
    ) -> None:
        self.max_points, self.min_interval = max_points, min_interval
        self._last_draw = -np.inf
        x_scale, self.y_scale = bq.LinearScale(), bq.LogScale()
        scales = {"x": x_scale, "y": self.y_scale}
        empty = np.zeros(0, np.float32)
        # Shown before any ratio arrives: a figure whose scales have no domain draws its
        # axes at NaN in the browser and its view fails. The guide gives x one; y is set
        # below, with decade ticks (a log axis's own 1..9 ticks overlap).
        self.guide = bq.Lines(
            x=np.array([0.0, 1.0], np.float32), y=np.full(2, GUIDE, np.float32),
            scales=scales, colors=[_GUIDE_COLOUR], line_style="dashed", labels=["1e-3 guide"],
            tooltip=bq.Tooltip(fields=["name"], labels=[""]),
        )  # fmt: skip
        self.lines = bq.Lines(
            x=empty, y=empty, scales=scales, stroke_width=1.5,
            tooltip=bq.Tooltip(fields=["name"], labels=[""]),
        )  # fmt: skip
        self.x_axis = step_axis(x_scale)
        axes = [self.x_axis, log_axis(self.y_scale)]
        title = "Update / weight ratio ‖Δθ‖/‖θ‖"
        self.figure = figure([self.guide, self.lines], axes, "gw-update-chart", title)
        set_log_domain(self.y_scale, np.array([GUIDE / 100, GUIDE * 100]))  # decade ticks
        step_labels(self.x_axis, np.array([0, 1]))  # whole steps, not "100m" SI fractions
        self.key = w.HTML(layout=Layout(flex="1 1 auto"))
        self.noted = NotedFigure(self.figure)
        self.widget = w.VBox([self.key, self.noted])
        self.set_layers(layers)

    def set_layers(self, layers: Sequence[str], model: Any = None) -> None:
        """Show another run's layers (``model`` adds module types), nothing drawn yet."""
        self.layers = tuple(layers)
        self.columns: Columns = select(layer_groups(self.layers, model), OVERVIEW, _MAX_LINES)
        self.colours = depth_colors(len(self.columns))
        empty = np.zeros(0, np.float32)
        with self.lines.hold_sync():
            self.lines.x, self.lines.y = empty, empty
            self.lines.labels, self.lines.colors = list(self.columns.labels), self.colours
        self.key.value = _key(self.columns, self.colours)
        self.noted.say(_WAITING)
        self._last_draw = -np.inf

    def update(self, history: History, force: bool = False) -> None:
        """Draw the ``update_ratio`` series of ``history`` (two points or more), unless the
        last redraw is too recent (``force`` skips the wait)."""
        now = time.monotonic()
        if not force and now - self._last_draw < self.min_interval:
            return
        self._last_draw = now
        ratio = history.series("update_ratio")
        if len(ratio) < 2:
            self.noted.say(_WAITING)
            return
        weight = history.series("weight_norm")
        weights = weight.last if len(weight) == len(ratio) else None
        per_block = block_ratios(self.columns, ratio.last, weights)
        x, y = typical(ratio.steps, per_block, self.max_points)
        y = positive(y)
        labels = [_label(c, row) for c, row in zip(self.columns.labels, y, strict=True)]
        with self.lines.hold_sync(), self.guide.hold_sync():
            self.lines.x, self.lines.y = x, y
            self.guide.x = np.array([x[0], x[-1]], np.float32)
            self.guide.y = np.full(2, GUIDE, np.float32)
            self.lines.labels = labels
        step_labels(self.x_axis, ratio.steps)
        set_log_domain(self.y_scale, y, np.array([GUIDE], np.float32))
        self.noted.say("")


def block_ratios(columns: Columns, ratios: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    """``(T, C)`` ratio of each position: ‖Δθ‖/‖θ‖ over all its layers' parameters together
    (the update norms rebuilt as ratio x weight norm); without weight norms, the L2 of the
    layers' ratios over the square root of their count (exact for one layer)."""
    ratios = np.asarray(ratios, np.float32)
    if weights is None:
        counts = np.array([len(m) for m in columns.members], np.float32)
        return columns.norms(ratios) / np.sqrt(counts)
    weights = np.asarray(weights, np.float32)
    moved = columns.norms(ratios * weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(columns.norms(weights) > 0, moved / columns.norms(weights), np.nan)


def _label(name: str, values: np.ndarray) -> str:
    finite = values[np.isfinite(values)]
    return f"{name}: update/weight {finite[-1]:.1e} (latest)" if finite.size else name


def _key(columns: Columns, colours: list[str]) -> str:
    """Every line's name in its colour (input first), and the guide."""
    if not len(columns):
        return ""
    lines = key_html(list(zip(columns.labels, colours, strict=True)), glyph="■")
    return f"{lines} · {key_html([('1e-3 guide', _GUIDE_COLOUR)], glyph='┅')}"
