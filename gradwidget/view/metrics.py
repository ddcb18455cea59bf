"""bqplot charts of the training side: loss and accuracy, activation health."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import bqplot as bq
import ipywidgets as w
import numpy as np

from ..diagnose.structure import layer_groups
from ..history import History
from ._data import decimate_minmax
from ._depth import depth_columns
from ._empty import NotedFigure
from ._figures import figure, key_html, step_axis, step_labels
from ._loss_axis import LossAxis
from ._tick_labels import depth_axis

__all__ = ["ActivityChart", "LossChart", "activity_note"]

_DEAD, _SATURATED = "#7f7f7f", "#ff7f0e"
_NO_LOSS = "No loss recorded: pass it to panel.capture(loss) to see it here."


class LossChart:
    """Loss over steps (left axis, log when every loss is positive) and, when recorded,
    accuracy in [0, 1] on a right axis that exists only while an accuracy line is drawn."""

    def __init__(self, max_points: int = 300) -> None:
        self.max_points = max_points
        x_scale, acc_scale = bq.LinearScale(), bq.LinearScale(min=0.0, max=1.0)
        self.loss_axis = LossAxis()
        self.lines = {
            "loss": self._line(x_scale, self.loss_axis.scale, "loss", "#1f77b4"),
            "accuracy": self._line(x_scale, acc_scale, "train accuracy", "#ff7f0e"),
            "test_accuracy": self._line(x_scale, acc_scale, "test accuracy", "#9467bd"),
        }
        self.x_axis = step_axis(x_scale)
        self.acc_axis = bq.Axis(
            scale=acc_scale, side="right", label="accuracy", tick_format=".0%",
            tick_values=[0, 0.5, 1],
        )  # fmt: skip
        axes = [self.x_axis, self.loss_axis.axis]
        self.figure = figure(list(self.lines.values()), axes, "gw-loss-chart", "Loss")
        self.key = w.HTML()  # the names of the drawn series, above the figure (no legend on it)
        self.noted = NotedFigure(self.figure)
        self.widget = w.VBox([self.key, self.noted])

    @staticmethod
    def _line(x_scale: bq.Scale, y_scale: bq.Scale, label: str, color: str) -> bq.Lines:
        empty = np.zeros(0, np.float32)
        scales = {"x": x_scale, "y": y_scale}
        tooltip = bq.Tooltip(fields=["name"], labels=["line"])
        return bq.Lines(
            x=empty, y=empty, scales=scales, labels=[label], colors=[color], tooltip=tooltip
        )

    def update(self, history: History) -> None:
        """Draw each scalar series that has at least two points."""
        span: list[float] = []  # first and last step of every drawn series
        for name, line in self.lines.items():
            s = history.loss_curve() if name == "loss" else history.series(name)
            if len(s) < 2:
                continue
            x, y = decimate_minmax(s.steps, s.lo, s.hi, self.max_points)
            with line.hold_sync():
                line.x, line.y = x, y[0]
            span += [float(s.steps[0]), float(s.steps[-1])]
        if span:
            step_labels(self.x_axis, np.array([min(span), max(span)]))
        drawn = [(ln.labels[0], ln.colors[0]) for ln in self.lines.values() if len(ln.x)]
        self.key.value = key_html(drawn, sep=" · ")
        loss = self.lines["loss"]
        if len(loss.x):
            self.loss_axis.fit([loss], [loss.y])
        accuracy = any(len(self.lines[n].x) for n in ("accuracy", "test_accuracy"))
        axes = [self.x_axis, self.loss_axis.axis, *([self.acc_axis] if accuracy else [])]
        if self.figure.axes != axes:
            right = 50 if accuracy else 20  # room for "100%", or none wasted
            with self.figure.hold_sync():
                self.figure.axes = axes
                self.figure.fig_margin = {**self.figure.fig_margin, "right": right}
        self.noted.say("" if len(loss.x) or accuracy else _NO_LOSS)


class ActivityChart:
    """Dead and saturated fraction of units at the latest sampled step, per block (its worst
    layer) or per layer (bars); a sentence over the bars says why when there are none."""

    def __init__(self, layers: Sequence[str]) -> None:
        self.x_scale, y_scale = bq.OrdinalScale(), bq.LinearScale(min=0.0, max=1.0)
        tooltip = bq.Tooltip(
            fields=["x", "y"], formats=["", ".1%"], labels=["where", "share of units"]
        )
        self.bars = bq.Bars(
            x=np.zeros(0, str), y=np.zeros((2, 0), np.float32),
            scales={"x": self.x_scale, "y": y_scale}, type="grouped",
            labels=["dead", "saturated"], colors=[_DEAD, _SATURATED], tooltip=tooltip,
        )  # fmt: skip
        self.x_axis = bq.Axis(scale=self.x_scale)
        fractions = bq.Axis(
            scale=y_scale, side="left", tick_format=".0%", tick_values=[0, 0.25, 0.5, 0.75, 1]
        )
        axes = [self.x_axis, fractions]
        self.figure = figure([self.bars], axes, "gw-act-chart", "Dead / saturated units")
        self.key = w.HTML(key_html([("dead", _DEAD), ("saturated", _SATURATED)], "▇", " · "))
        self.noted = NotedFigure(self.figure)
        self.widget = w.VBox([self.key, self.noted])  # the key above, not on the bars
        self.set_layers(layers)

    def set_layers(self, layers: Sequence[str], model: Any = None) -> None:
        """Show another run's layers along the x axis, all bars at zero."""
        self.columns = depth_columns(layer_groups(tuple(layers), model))
        labels = list(self.columns.labels)
        with self.bars.hold_sync():
            self.x_scale.domain = labels
            self.bars.x = np.array(labels, dtype=str)
            self.bars.y = np.zeros((2, len(labels)), np.float32)
        depth_axis(self.x_axis, self.columns)
        worst = " (worst layer of each block)" if self.columns.unit == "block" else ""
        self.figure.title = f"Dead / saturated units{worst}"
        self.noted.say(activity_note(None, None))

    def update(self, history: History) -> None:
        """Draw the newest row of ``dead_frac`` and ``saturated_frac`` (NaN: not applicable: 0)."""
        rows = [history.series(name).last for name in ("dead_frac", "saturated_frac")]
        if any(len(r) == 0 for r in rows):
            self.noted.say(activity_note(None, None))
            return
        worst = np.stack([self.columns.worst(r[-1]) for r in rows])
        with self.bars.hold_sync():
            self.bars.y = np.nan_to_num(worst).astype(np.float32)
        self.noted.say(activity_note(rows[0][-1], rows[1][-1]))


def activity_note(dead: np.ndarray | None, saturated: np.ndarray | None) -> str:
    """Why the activity chart shows no bar ("" when it shows some).

    ``dead`` and ``saturated`` are the newest per-layer fractions (None: none recorded);
    NaN saturation means no sigmoid- or tanh-like layer, so nothing can saturate.
    """
    if dead is None or saturated is None:
        return (
            "No activation statistics yet: they are sampled every act_every steps "
            "(act_every=None turns them off)."
        )
    can_saturate = bool(np.isfinite(saturated).any())
    if np.nan_to_num(dead).max(initial=0) > 0 or np.nan_to_num(saturated).max(initial=0) > 0:
        return ""
    if not can_saturate:
        return "No dead units, and no sigmoid or tanh layer: nothing can saturate."
    return "No dead or saturated units at the latest sampled step."
