"""Runs side by side: small multiples on shared scales, overlaid loss curves, a summary table."""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import astuple

import bqplot as bq
import ipywidgets as w
import numpy as np

from ..history import History
from ..session.summary import COLUMNS, RunSummary
from ._data import decimate_minmax
from ._widgets import close_tree
from .charts import GradChart, figure, set_log_domain

__all__ = ["CompareView", "to_html"]

# Categorical palette (d3 category10): one colour per run in the loss overlay; past ten runs
# the colours repeat with another dash pattern, so no two runs draw alike up to 40.
_RUN_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
_DASHES = ("solid", "dashed", "dotted", "dash_dotted")
_LEGEND_MAX_RUNS = 4  # more legend entries cover the curves: the table's swatches name them
_WIDE_CELLS_MAX_RUNS = 6  # up to two rows of three small multiples; then four to a row


def run_style(index: int) -> tuple[str, str]:
    """(colour, dash pattern) of the ``index``-th run of a comparison: distinct up to 40."""
    return _RUN_COLOURS[index % len(_RUN_COLOURS)], _DASHES[index // len(_RUN_COLOURS) % 4]


class _RunCell(w.VBox):
    """One run's small gradient chart under its name and a remove button."""

    def __init__(self, name: str, scales: tuple, on_remove) -> None:
        self.name = name
        self.chart = GradChart(  # layers arrive with the run's first snapshot (set_layers)
            x_scale=scales[0],
            y_scale=scales[1],
            max_points=120,
            legend=False,
            title=name,
            height="200px",
        )
        self.remove_button = w.Button(
            description="×", tooltip=f"Remove run {name!r}", layout=w.Layout(width="32px")
        )
        self.remove_button.add_class("gw-remove-run")
        self.remove_button.on_click(lambda _: on_remove(name))
        super().__init__(
            [w.HBox([self.remove_button]), self.chart.figure],
            layout=w.Layout(width="32%", min_width="220px"),
        )


class CompareView(w.VBox):
    """Every run of a panel on the same axes (css ``gw-compare``).

    The small multiples share one step scale and one log scale, so a vanishing run looks
    lower than a healthy one at a glance; the loss curves share one figure.

    Parameters
    ----------
    on_remove : callable
        Called with a run's name when its × button is clicked.
    """

    def __init__(self, on_remove: Callable[[str], None]) -> None:
        self.on_remove = on_remove
        self.scales = (bq.LinearScale(), bq.LogScale())
        self.cells: dict[str, _RunCell] = {}
        self.loss_lines: dict[str, bq.Lines] = {}
        self.styles: dict[str, tuple[str, str]] = {}  # a run keeps its colour when others go
        self._added = 0
        self.loss_scales = {"x": bq.LinearScale(), "y": bq.LinearScale()}
        axes = [
            bq.Axis(scale=self.loss_scales["x"], label="step"),
            bq.Axis(scale=self.loss_scales["y"], side="left", label="loss"),
        ]
        self.loss_figure = figure([], axes, "gw-compare-loss", "Loss of each run")
        self.grid = w.HBox(layout=w.Layout(flex_flow="row wrap", width="100%"))
        self.table = w.HTML()
        self.table.add_class("gw-compare-table")
        title = w.HTML("<b>Comparison</b>")
        super().__init__([title, self.grid, self.loss_figure, self.table])
        self.add_class("gw-compare")

    def add_run(self, name: str) -> None:
        """Make the widgets of run ``name``; call on the kernel's thread (see ``Dashboard``)."""
        self.cells[name] = _RunCell(name, self.scales, self.on_remove)
        colour, dash = self.styles[name] = run_style(self._added)
        self._added += 1
        line = bq.Lines(scales=self.loss_scales, labels=[name], colors=[colour], line_style=dash)
        self.loss_lines[name] = line
        self._show_runs()

    def update(self, histories: Mapping[str, History], rows: Sequence[RunSummary]) -> None:
        """Show exactly the runs in ``histories`` (name -> snapshot) and the table ``rows``.

        Only assigns traits, so the refresher thread may call it; runs not added with
        :meth:`add_run` are left out.
        """
        for name in [n for n in self.cells if n not in histories]:
            close_tree(self.cells.pop(name))
            close_tree(self.loss_lines.pop(name))
            self.styles.pop(name)
        self._show_runs()
        for name, cell in self.cells.items():
            history = histories[name]
            if cell.chart.layers != history.layers:
                cell.chart.set_layers(history.layers)
            cell.chart.update(history)
            self._update_loss(self.loss_lines[name], history)
        set_log_domain(self.scales[1], *(c.chart.lines.y for c in self.cells.values()))
        self.table.value = to_html(rows, {n: c for n, (c, _) in self.styles.items()})

    def _show_runs(self) -> None:
        many = len(self.cells) > _WIDE_CELLS_MAX_RUNS
        with self.hold_sync():
            for cell in self.cells.values():
                cell.layout.width = "24%" if many else "32%"
                cell.chart.figure.layout.height = "160px" if many else "200px"
            for line in self.loss_lines.values():
                line.display_legend = len(self.loss_lines) <= _LEGEND_MAX_RUNS
            self.grid.children = tuple(self.cells.values())
            self.loss_figure.marks = list(self.loss_lines.values())

    @staticmethod
    def _update_loss(line: bq.Lines, history: History) -> None:
        s = history.loss_curve()
        if len(s) < 2:
            return
        x, y = decimate_minmax(s.steps, s.lo, s.hi, 300)
        with line.hold_sync():
            line.x, line.y = x, np.ascontiguousarray(y[0])


def to_html(rows: Sequence[RunSummary], colours: Mapping[str, str] | None = None) -> str:
    """A small HTML table of ``rows`` (numbers to 3 significant digits, "–" for none).

    ``colours`` (run name -> CSS colour) adds a first column with a swatch of each run's
    loss-line colour: the table is the legend when there are too many runs for one on the
    chart. The training column shows only when a run used a training remedy.
    """
    shown = [i for i, c in enumerate(COLUMNS) if c != "training" or any(r.training for r in rows)]
    swatches = colours is not None
    head = "<th></th>" * swatches + "".join(f"<th>{COLUMNS[i]}</th>" for i in shown)
    body = "".join(
        "<tr>"
        + (_swatch(colours.get(row.run)) if swatches else "")
        + "".join(f"<td>{_cell(astuple(row)[i])}</td>" for i in shown)
        + "</tr>"
        for row in rows
    )
    style = "border-collapse:collapse;font-size:12px"
    return f'<table style="{style}"><tr>{head}</tr>{body}</table>'


def _swatch(colour: str | None) -> str:
    return f'<td><span style="color:{html.escape(colour)}">■</span></td>' if colour else "<td></td>"


def _cell(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3g}" if isinstance(value, float) else html.escape(str(value))
