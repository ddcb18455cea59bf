"""The explorer's three bqplot charts of a :class:`~gradwidget.explorer.ChainProfile`, built
once and redrawn in place: the gradient per layer, the local derivatives, the prediction."""

from __future__ import annotations

from contextlib import ExitStack

import bqplot as bq
import ipywidgets as w
import numpy as np

from ..explorer import ChainProfile
from ._data import log_ticks, step_ticks
from ._figures import figure, key_html, set_ticks

__all__ = ["ChainCharts"]

_MEASURED = "#3a8fd8"  # mid blue: readable on a white page and on JupyterLab's dark theme
_PREDICTED = "#ff7f0e"
_SLOPE = "#2ca02c"
_CEILING = "#d62728"
SIGMOID_CEILING = 0.25  # sigma'(0) = 1/4, the most a sigmoid can pass on
_SLOPE_TICKS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])


class ChainCharts:
    """Gradient norm per layer (log y); mean ``|f'(z)|`` per layer with sigmoid's 0.25
    ceiling dashed; the product of local factors (dashed) over the measured profile."""

    def __init__(self) -> None:
        self.x_scale = bq.LinearScale(min=1.0, max=2.0)
        self.log_scale = bq.LogScale(min=1e-3, max=1.0)
        self.grad_axis = _log_axis(self.log_scale)
        self.grad = _line(self.x_scale, self.log_scale, _MEASURED, "measured")
        self.measured = _line(self.x_scale, self.log_scale, _MEASURED, "measured")
        self.predicted = _line(self.x_scale, self.log_scale, _PREDICTED, "predicted")
        self.predicted.line_style = "dashed"
        self.predicted_axis = _log_axis(self.log_scale)
        self.slope_scale = slope_scale = bq.LinearScale(min=0.0, max=0.3)
        self.slope = _line(self.x_scale, slope_scale, _SLOPE, "mean |f'(z)|")
        self.ceiling = bq.Lines(
            x=np.array([1.0, 2.0]), y=np.full(2, SIGMOID_CEILING),
            scales={"x": self.x_scale, "y": slope_scale}, colors=[_CEILING],
            line_style="dashed", stroke_width=2,
        )  # fmt: skip
        self.slope_axis = slope_axis = bq.Axis(scale=slope_scale, side="left", tick_format=".2~f")
        self.layer_axes = [_layer_axis(self.x_scale) for _ in range(3)]
        self.figures = [
            figure(
                [self.grad], [self.layer_axes[0], self.grad_axis],
                "gw-explorer-grad", "Gradient reaching each layer",
            ),
            figure(
                [self.slope, self.ceiling], [self.layer_axes[1], slope_axis],
                "gw-explorer-slope", "Mean |f′(z)| per layer",
            ),
            figure(
                [self.measured, self.predicted],
                [self.layer_axes[2], self.predicted_axis],
                "gw-explorer-predicted", "Predicted vs measured",
            ),
        ]  # fmt: skip
        keys = [
            [("gradient norm at the layer's output", _MEASURED)],
            [("activation's slope", _SLOPE), ("sigmoid's ceiling 0.25", _CEILING)],
            [("measured", _MEASURED), ("product of local factors", _PREDICTED)],
        ]
        # Keys above the figures, never over the data (bqplot's legend box covers lines).
        self.boxes = [
            w.VBox([w.HTML(key_html(key, sep=" &nbsp; ")), fig])
            for key, fig in zip(keys, self.figures, strict=True)
        ]

    def draw(self, profile: ChainProfile) -> None:
        """Show ``profile``: each mark's and scale's changes go out in one message."""
        depth = len(profile.grad_norms)
        layers = np.arange(1, depth + 1, dtype=np.float64)
        low, high = _decades(profile.grad_norms, profile.predicted)
        marks = (self.grad, self.measured, self.predicted, self.slope, self.ceiling)
        scales = (self.x_scale, self.log_scale, self.slope_scale)
        # A range just above the largest slope (0.3 at least): a sigmoid's slopes then sit
        # visibly under the 0.25 line, and a ReLU's at 0.5 still fit.
        top = max(0.3, np.ceil(11 * np.max(profile.local_derivatives, initial=0.0)) / 10)
        with ExitStack() as stack:
            for widget in (*marks, *scales):
                stack.enter_context(widget.hold_sync())
            self.x_scale.min, self.x_scale.max = 1.0, float(max(depth, 2))
            self.log_scale.min, self.log_scale.max = low, high
            grad = _on_scale(profile.grad_norms, low)
            self.grad.x, self.grad.y = _at_least_two(layers, grad)
            self.measured.x, self.measured.y = _at_least_two(layers, grad)
            self.predicted.x, self.predicted.y = _at_least_two(
                layers, _on_scale(profile.predicted, low)
            )
            # The activation of layer k sits at x = k; the logits layer has none.
            self.slope.x, self.slope.y = _at_least_two(layers[:-1], profile.local_derivatives)
            self.ceiling.x = np.array([1.0, float(max(depth, 2))])
            self.slope_scale.max = float(top)
        set_ticks(self.slope_axis, _SLOPE_TICKS[top >= _SLOPE_TICKS])
        ticks = log_ticks(low, high)
        for axis in (self.grad_axis, self.predicted_axis):
            set_ticks(axis, ticks)
        # Layer 1 and whole layers 1, 2 or 5 times a power of ten apart: d3's own ticks of a
        # padded domain fall between layers, and their rounded labels name the wrong ones.
        whole = np.union1d([1.0], step_ticks(1.0, float(max(depth, 2)), max_ticks=6))
        for axis in self.layer_axes:
            set_ticks(axis, whole)


def _line(x: bq.Scale, y: bq.Scale, colour: str, label: str) -> bq.Lines:
    return bq.Lines(
        x=np.zeros(2), y=np.ones(2), scales={"x": x, "y": y}, colors=[colour],
        marker="circle", marker_size=12, labels=[label],
    )  # fmt: skip


def _layer_axis(scale: bq.Scale) -> bq.Axis:
    return bq.Axis(scale=scale, label="layer (input → output)", tick_format="d")


def _log_axis(scale: bq.LogScale) -> bq.Axis:
    return bq.Axis(scale=scale, side="left", tick_format=".0e")


def _decades(*arrays: np.ndarray) -> tuple[float, float]:
    """Whole decades around the finite positive values (a deep sigmoid stack reaches 1e-84,
    far below the panel's floor of 1e-12), never a zero-width range."""
    values = np.concatenate([a[np.isfinite(a) & (a > 0)] for a in arrays])
    if values.size == 0:
        return 1e-3, 1.0
    low = 10.0 ** np.floor(np.log10(values.min()) + 1e-9)
    high = 10.0 ** np.ceil(np.log10(values.max()) - 1e-9)
    return float(low), float(max(high, low * 10))


def _on_scale(values: np.ndarray, floor: float) -> np.ndarray:
    """float64 (float32 ends at 1e-38), with zero or non-finite values put on the floor."""
    return np.where(np.isfinite(values) & (values > 0), values, floor).astype(np.float64)


def _at_least_two(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # bqplot squeezes a one-point line away: repeat a lone point, and draw none as nothing.
    if len(x) == 1:
        return np.repeat(x, 2), np.repeat(y, 2)
    return x, np.asarray(y, dtype=np.float64)
