"""The charts and the diagnosis of the run on show, redrawn from one snapshot at a time."""

from __future__ import annotations

import time
from typing import Any

import ipywidgets as w

from ..diagnose.rules import Finding, Thresholds, diagnose
from ..history import History
from ..remedies import LABELS
from .dashboard import Dashboard
from .diagnosis_box import DiagnosisBox

__all__ = ["LiveCharts"]

_HEAVY_EVERY_S = 1.0  # the diagnosis (and with it the heat map): at most this often


class LiveCharts(w.VBox):
    """The diagnosis box on top, then the dashboard of charts, which follows the run's layers.

    Parameters
    ----------
    thresholds : Thresholds
        Rules of the diagnosis; its vanishing and exploding ratios bound the flow chart's band.
    beside : ipywidgets.Widget, optional
        Shown right under the diagnosis, above the charts (the panel's fix controls), so
        the verdict and what to do about it are read first, without scrolling.
    """

    def __init__(self, thresholds: Thresholds, beside: w.Widget | None = None) -> None:
        self.thresholds = thresholds
        self.dashboard = Dashboard((), self._band)  # here, on the kernel's thread: see Dashboard
        self.findings: tuple[Finding, ...] = ()
        self._last_heavy = -float("inf")
        self.charts = w.VBox([w.HTML("<i>The charts appear with the first training step.</i>")])
        self.diagnosis = DiagnosisBox(LABELS)
        top = [self.diagnosis] if beside is None else [self.diagnosis, beside]
        super().__init__([*top, self.charts])

    def expect(self, layers: tuple[str, ...], model: Any = None) -> None:
        """Lay the charts out for ``layers`` now, before any data: the first draw then only
        fills them. (Laid out in that draw, a 10-layer panel's first redraw cost 10-11 ms,
        2.5 % of a 300-step Lightning run of 1.4 ms steps; filling them costs 4-5.)"""
        if layers and self.dashboard.layers != layers:
            self.dashboard.set_layers(layers, model)

    def restart(self) -> None:
        """A new run is on show: diagnose it at its first draw."""
        self._last_heavy = -float("inf")

    def draw(self, snapshot: History, final: bool, model: Any = None) -> bool:
        """Redraw from ``snapshot``; True if the diagnosis ran too (due, or ``final``).

        ``model``, when known, gives the charts each layer's module type and parameter count
        (tooltips, norm layers told apart); the layer names alone suffice otherwise.
        """
        frozen = snapshot.frozen()  # every chart and the diagnosis read one copy of each series
        if len(frozen) < 2:  # every chart needs two steps: a half-drawn view breaks in bqplot
            return False
        if self.dashboard.layers != snapshot.layers:
            self.dashboard.set_layers(snapshot.layers, model)
        heavy = final or time.monotonic() - self._last_heavy >= _HEAVY_EVERY_S
        if heavy:
            self._last_heavy = time.monotonic()
            self.findings = tuple(diagnose(frozen, self.thresholds))
            self.diagnosis.show(self.findings)
            self.dashboard.flag(self.findings)
        self.dashboard.update(frozen, force=final)
        if self.charts.children != (self.dashboard,):
            # Shown only once it holds data: a bqplot view created from a half-set state
            # (layers known, values not yet) fails in the browser.
            self.charts.children = (self.dashboard,)
        return heavy

    @property
    def _band(self) -> tuple[float, float]:
        return (self.thresholds.vanishing_ratio, self.thresholds.exploding_ratio)
