"""The live charts of one run, laid out together and updated from one snapshot."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import ipywidgets as w

from ..diagnose.rules import Finding
from ..history import History
from ._tick_labels import MIN_CHART_PX
from .charts import FlowChart, GradChart, HeatChart
from .metrics import ActivityChart, LossChart
from .updates import UpdateChart

__all__ = ["Dashboard"]


class Dashboard(w.GridBox):
    """Gradient, flow, heat map, loss, activity and update-ratio charts of one run, in a grid.

    The grid puts as many columns as fit at ``MIN_CHART_PX`` or more each (two on a
    1,400 px page), so the depth axes always have the room their thinned labels assume.

    Built once, on the kernel's thread: widgets created from another thread can reach the
    browser before the models they refer to, and their views break. A new run's layers are
    shown by :meth:`set_layers`, which only assigns traits and is safe from any thread.

    Parameters
    ----------
    layers : sequence of str
        Layer names, input to output (a run's layers are fixed after its first step).
    band : (float, float)
        Healthy range of the flow chart, as multiples of the output layer's norm.
    """

    def __init__(self, layers: Sequence[str], band: tuple[float, float]) -> None:
        self.layers = tuple(layers)
        self.grad, self.flow = GradChart(layers), FlowChart(layers, band)
        self.heat, self.loss, self.activity = HeatChart(layers), LossChart(), ActivityChart(layers)
        self.updates = UpdateChart(layers)
        self.flagged: tuple[str, ...] = ()
        # A Layout per box: closing one panel closes its layouts, so none may be shared.
        layout = w.Layout(
            width="100%",
            grid_template_columns=f"repeat(auto-fill, minmax({MIN_CHART_PX}px, 1fr))",
            grid_gap="4px 12px",
        )
        charts = [self.grad.widget, self.flow.figure, self.heat.figure]
        more = [self.loss.widget, self.activity.widget, self.updates.widget]
        super().__init__([*charts, *more], layout=layout)
        self.add_class("gw-dashboard")

    def set_layers(self, layers: Sequence[str], model: Any = None) -> None:
        """Show another run's layers in every chart, with nothing drawn yet."""
        self.layers, self.flagged = tuple(layers), ()
        for chart in (self.grad, self.flow, self.heat, self.activity, self.updates):
            chart.set_layers(layers, model)

    def update(self, history: History, force: bool = False) -> None:
        """Redraw from ``history``; the heat map and the update ratios only if due or
        ``force``."""
        self.grad.update(history)
        self.flow.update(history, self.flagged)
        self.loss.update(history)
        self.activity.update(history)
        self.updates.update(history, force)
        self.heat.update(history, force)

    def flag(self, findings: Sequence[Finding]) -> None:
        """Mark the layers the findings name (drawn at the next update)."""
        named = {layer for finding in findings for layer in finding.layers}
        self.flagged = tuple(layer for layer in self.layers if layer in named)
