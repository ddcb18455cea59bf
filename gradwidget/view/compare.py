"""Runs side by side: the loss of each run on one chart, a table in words, small multiples.

The loss overlay comes first because it tells the story ("the fix works"): a log axis (or a
linear one cut at a spike) keeps a flat baseline and a fixed run far apart, and each line
ends in its final value, in its colour. The table under it has a chip of each run's colour;
each small multiple's header row holds the run's name and its remove button.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import bqplot as bq
import ipywidgets as w
import numpy as np

from ..history import History
from ..session.summary import RunSummary
from ._data import decimate_minmax
from ._figures import figure, key_html, step_axis, step_labels
from ._loss_axis import LossAxis
from ._ranges import dodge
from ._widgets import close_tree
from .charts import GradChart, set_log_domain
from .table import to_html

__all__ = ["CompareView", "run_style", "to_html"]

# Categorical palette (d3 category10): one colour per run in the loss overlay; past ten runs
# the colours repeat with another dash pattern, so no two runs draw alike up to 40.
_RUN_COLOURS = (
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
)  # fmt: skip
_DASHES = ("solid", "dashed", "dotted", "dash_dotted")
_TRIAL_STYLE = ("#b8b8b8", "dotted")
_WIDE_CELLS_MAX_RUNS = 6  # up to two rows of three small multiples; then four to a row
_LOSS_HEIGHT_PX = 300
_LABEL_GAP_PX = 15  # final-value labels at least this far apart vertically
_PLOT_HEIGHT_PX = _LOSS_HEIGHT_PX - 65  # less the figure's top and bottom margins


def run_style(index: int) -> tuple[str, str]:
    """(colour, dash pattern) of the ``index``-th run of a comparison: distinct up to 40."""
    return _RUN_COLOURS[index % len(_RUN_COLOURS)], _DASHES[index // len(_RUN_COLOURS) % 4]


class _RunCell(w.VBox):
    """One run's small gradient chart under a header row: colour chip, name, remove button."""

    def __init__(self, name: str, colour: str, scales: tuple, on_remove) -> None:
        self.name = name
        self.chart = GradChart(  # layers arrive with the run's first snapshot (set_layers)
            x_scale=scales[0], y_scale=scales[1], max_points=120, legend=False, title="",
            height="200px",
        )  # fmt: skip
        self.chart.figure.fig_margin = {**self.chart.figure.fig_margin, "top": 10}
        self.remove_button = w.Button(
            description="×", tooltip=f"Remove run {name!r} from the comparison",
            layout=w.Layout(width="28px", height="24px", padding="0"),
        )  # fmt: skip
        self.remove_button.add_class("gw-remove-run")
        self.remove_button.on_click(lambda _: on_remove(self.name))
        self.title = w.HTML(layout=w.Layout(flex="1 1 auto"))
        self.rename(name, colour)
        header = w.HBox([self.title, self.remove_button], layout=w.Layout(align_items="center"))
        super().__init__(
            [header, self.chart.figure], layout=w.Layout(width="32%", min_width="220px")
        )

    def rename(self, name: str, colour: str) -> None:
        """Show run ``name`` in ``colour`` (a spare cell taken into use; traits only)."""
        self.name = name
        self.title.value = f"<b>{key_html([(name, colour)], glyph='■')}</b>"
        self.remove_button.tooltip = f"Remove run {name!r} from the comparison"


class CompareView(w.VBox):
    """Every run of a panel on the same axes (css ``gw-compare``).

    The loss overlay (css ``gw-loss-overlay``) and the table (css ``gw-compare-table``) come
    first; then one small gradient chart per run, all on one step scale and one log scale,
    so a vanishing run looks lower than a healthy one at a glance.

    Parameters
    ----------
    on_remove : callable
        Called with a run's name when its × button is clicked.
    """

    def __init__(self, on_remove: Callable[[str], None]) -> None:
        self.on_remove = on_remove
        self._spares: list[tuple[_RunCell, bq.Lines]] = []  # made ahead for a search's runs
        # Domains from the start: the comparison shows when a run starts, before its data,
        # and a bqplot figure on a log scale with no domain fails to create its view.
        self.scales = (bq.LinearScale(), bq.LogScale(min=1e-8, max=1.0))
        self.cells: dict[str, _RunCell] = {}
        self.loss_lines: dict[str, bq.Lines] = {}
        self.styles: dict[str, tuple[str, str]] = {}  # a run keeps its colour when others go
        self._added = 0
        self._finals: dict[str, float] = {}  # each run's last recorded loss
        self.loss_axis = LossAxis()
        self.loss_scales = {"x": bq.LinearScale(min=0.0, max=1.0), "y": self.loss_axis.scale}
        self.finals = bq.Label(
            x=np.zeros(0, np.float32), y=np.zeros(0, np.float32), text=[], colors=[],
            scales=self.loss_scales, x_offset=6, y_offset=4, align="start",
            default_size=12, font_weight="bold", apply_clip=False,
        )  # fmt: skip
        self.step_axis = step_axis(self.loss_scales["x"])
        self.loss_figure = figure(
            [self.finals], [self.step_axis, self.loss_axis.axis], "gw-compare-loss",
            "Loss of each run (final value at the line's end)", f"{_LOSS_HEIGHT_PX}px",
        )  # fmt: skip
        self.loss_figure.fig_margin = {**self.loss_figure.fig_margin, "right": 70}
        self.loss_figure.add_class("gw-loss-overlay")
        self.grid = w.HBox(layout=w.Layout(flex_flow="row wrap", width="100%"))
        self.table = w.HTML()
        self.table.add_class("gw-compare-table")
        title = w.HTML("<b>Comparison</b>")
        heading = w.HTML("<b>Gradient norm of each run</b> (same axes for all)")
        super().__init__([title, self.loss_figure, self.table, heading, self.grid])
        self.add_class("gw-compare")

    def reserve(self, count: int) -> None:
        """Make the widgets of ``count`` runs still to come, here on the kernel's thread, so
        that runs a background search starts join the comparison from the refresher thread
        by assigning traits only (see ``Dashboard`` for why widgets are made on the kernel's
        thread)."""
        while len(self._spares) < count:
            self._spares.append(self._widgets("", *run_style(0)))

    def release(self) -> None:
        """Close the spare widgets no run took (a panel closing)."""
        for cell, line in self._spares:
            close_tree(cell)
            close_tree(line)
        self._spares.clear()

    def add_run(self, name: str, trial: bool = False) -> None:
        """Show run ``name``: a reserved spare if any, else new widgets (kernel's thread).

        A ``trial`` (a short run of Find a fix) is drawn light grey and dotted, so that the
        runs that tell the story (the baseline, the fixes, the winner) keep the colours.
        """
        if trial:
            colour, dash = self.styles[name] = _TRIAL_STYLE
        else:
            colour, dash = self.styles[name] = run_style(self._added)
            self._added += 1
        if self._spares:
            cell, line = self._spares.pop(0)
            cell.rename(name, colour)
            with line.hold_sync():
                line.labels, line.colors, line.line_style = [name], [colour], dash
        else:
            cell, line = self._widgets(name, colour, dash)
        self.cells[name], self.loss_lines[name] = cell, line
        self._show_runs()

    def _widgets(self, name: str, colour: str, dash: str) -> tuple[_RunCell, bq.Lines]:
        cell = _RunCell(name, colour, self.scales, self.on_remove)
        scales = {"x": self.loss_scales["x"], "y": self.loss_axis.scale}
        line = bq.Lines(
            scales=scales, labels=[name], colors=[colour], line_style=dash, stroke_width=2,
            tooltip=bq.Tooltip(fields=["name"], labels=["run"]), display_legend=False,
        )  # fmt: skip
        return cell, line

    def update(self, histories: Mapping[str, History], rows: Sequence[RunSummary]) -> None:
        """Show exactly the runs in ``histories`` (name -> snapshot) and the table ``rows``.

        Only assigns traits, so the refresher thread may call it; runs not added with
        :meth:`add_run` are left out.
        """
        for name in [n for n in self.cells if n not in histories]:
            close_tree(self.cells.pop(name))
            close_tree(self.loss_lines.pop(name))
            self.styles.pop(name)
            self._finals.pop(name, None)
        self._show_runs()
        for name, cell in self.cells.items():
            history = histories[name]
            if cell.chart.layers != history.layers:
                cell.chart.set_layers(history.layers)
            cell.chart.update(history)
            self._update_loss(name, history)
        set_log_domain(self.scales[1], *(c.chart.lines.y for c in self.cells.values()))
        self._label_steps()
        self._fit_loss()
        self.table.value = to_html(rows, {n: c for n, (c, _) in self.styles.items()})

    def _label_steps(self) -> None:
        """The same step ticks under every small chart, over the longest run: a short trial's
        own ticks (0, 50, 100) would crowd into the left edge of the shared step scale."""
        xs = [c.chart.lines.x for c in self.cells.values() if c.chart.lines.x is not None]
        xs = [x for x in xs if len(x)]
        if not xs:
            return
        span = np.array([min(float(x[0]) for x in xs), max(float(x[-1]) for x in xs)])
        for cell in self.cells.values():
            step_labels(cell.chart.x_axis, span)

    def _show_runs(self) -> None:
        many = len(self.cells) > _WIDE_CELLS_MAX_RUNS
        with self.hold_sync():
            for cell in self.cells.values():
                cell.layout.width = "24%" if many else "32%"
                cell.chart.figure.layout.height = "160px" if many else "200px"
            self.grid.children = tuple(self.cells.values())
            self.loss_figure.marks = [*self.loss_lines.values(), self.finals]

    def _update_loss(self, name: str, history: History) -> None:
        s = history.loss_curve()
        if len(s) < 2:
            return
        x, y = decimate_minmax(s.steps, s.lo, s.hi, 300)
        line = self.loss_lines[name]
        with line.hold_sync():
            line.x, line.y = x, np.ascontiguousarray(y[0])
        self._finals[name] = float(s.last[-1, 0])  # the line ends in a bucket's min or max

    def _fit_loss(self) -> None:
        """Fit the loss axis to every line; label each line's end with its final value,
        labels moved apart where two runs end close together."""
        drawn = {n: ln for n, ln in self.loss_lines.items() if ln.x is not None and len(ln.x)}
        marks = [*self.loss_lines.values(), self.finals]
        axis_range = self.loss_axis.fit(marks, [ln.y for ln in drawn.values()])
        if not drawn:
            return
        ends = np.array([self._finals.get(n, np.nan) for n in drawn])
        shown = np.isfinite(ends)
        heights = dodge(axis_range.fraction(ends[shown]), _LABEL_GAP_PX / _PLOT_HEIGHT_PX)
        first_step = min(float(ln.x[0]) for ln in drawn.values())
        last_step = max(float(ln.x[-1]) for ln in drawn.values())
        with self.finals.hold_sync():
            self.finals.x = np.full(int(shown.sum()), last_step, np.float32)
            self.finals.y = axis_range.value(heights).astype(np.float32)
            self.finals.text = [f"{v:.3g}" for v in ends[shown]]
            names = [n for n, ok in zip(drawn, shown, strict=True) if ok]
            self.finals.colors = [self.styles[n][0] for n in names]
        with self.loss_scales["x"].hold_sync():
            self.loss_scales["x"].min = first_step
            self.loss_scales["x"].max = max(last_step, first_step + 1.0)
        step_labels(self.step_axis, np.array([first_step, last_step]))
