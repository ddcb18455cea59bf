"""A still picture of a panel's runs, drawn with matplotlib from their recorded data.

A widget needs a live kernel (or the report's JavaScript); a PNG output does not, so a
snapshot left in a cell still shows the finding where a saved notebook is rendered without
one (GitHub, nbviewer). Drawn from the histories and the diagnosis, not from the widgets, so
it does not depend on how the panel lays out its charts. matplotlib is an optional extra
(``gradwidget[snapshot]``), imported only here, without pyplot: the user's backend and open
figures are left alone.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..diagnose.rules import Finding, Thresholds, diagnose
from ..errors import GradWidgetError
from ..history import History
from ..session import Session
from ..session.summary import RunSummary
from ._data import decimate_minmax, depth_colors, positive
from ._ranges import dodge, loss_range
from .compare import run_style
from .table import format_rows

__all__ = ["Snapshot", "draw", "take"]

_MAX_RUN_CHARTS = 4  # the first run and the newest get a gradient chart each; all are elsewhere
_POINTS = 600  # per line: plenty for a 12-inch figure, and spikes survive (min/max)
_TEXT_WIDTH = 160  # characters per line of the diagnosis text
_LINES_PER_FINDING = 3  # the cause in short; the report and the panel give the whole message
_TEXT_LINES = 14  # what fits under the charts at 8.5 pt
_TITLE_CHARS = 26  # a top-row title wider than its chart is wrapped, never cut


@dataclass(frozen=True)
class Snapshot:
    """A PNG picture; a notebook cell shows it and a saved notebook keeps it.

    Attributes
    ----------
    png : bytes
        The PNG file's bytes.
    width, height : int
        Size in pixels.
    """

    png: bytes = field(repr=False)
    width: int
    height: int

    def _repr_png_(self) -> bytes:
        return self.png

    def save(self, path: str | Path) -> Path:
        """Write the PNG to ``path``; the path."""
        path = Path(path)
        path.write_bytes(self.png)
        return path


def take(session: Session, dpi: int = 100) -> Snapshot:
    """Draw ``session``'s runs (its own loop, its logs) as a PNG of 12 x 9 inches at ``dpi``,
    with the comparison table when there are two runs or more."""
    histories = session.histories()
    rows = session.summaries() if len(histories) > 1 else []
    return picture(histories, session.thresholds, dpi, rows)


def picture(
    histories: Mapping[str, History],
    thresholds: Thresholds,
    dpi: int = 100,
    rows: Sequence[RunSummary] = (),
) -> Snapshot:
    """Draw ``histories`` (run name -> History), their diagnosis and the comparison ``rows``
    (none: no table) as a PNG at ``dpi``."""
    if not dpi > 0:
        raise GradWidgetError(f"dpi must be a positive number of dots per inch, got {dpi!r}.")
    histories = {k: h for k, h in histories.items() if len(h)}
    if not histories:
        raise GradWidgetError(
            "Nothing to draw yet: train the model (or capture a step of your loop) first, "
            "then take the snapshot."
        )
    findings = {name: diagnose(h, thresholds) for name, h in histories.items()}
    figure = draw(histories, findings, thresholds, rows)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    width, height = (round(v) for v in figure.get_size_inches() * dpi)
    return Snapshot(buffer.getvalue(), width, height)


def draw(
    histories: Mapping[str, History],
    findings: Mapping[str, Sequence[Finding]],
    thresholds: Thresholds,
    rows: Sequence[RunSummary] = (),
) -> Any:
    """A matplotlib ``Figure``: gradient norms per run, loss, gradient flow, the comparison
    table and the diagnosis.

    Parameters
    ----------
    histories : mapping of str to History
        Each run's recorded data by run name, oldest run first (none empty).
    findings : mapping of str to sequence of Finding
        Each run's diagnosis.
    thresholds : Thresholds
        Its ``window`` sets how many recent samples the gradient flow chart takes the median of.
    rows : sequence of RunSummary
        The comparison table's rows, formatted as in the panel; none: no table.
    """
    figure_class = _matplotlib_figure()
    fig = figure_class(figsize=(12, 9), layout="constrained")
    colours = {name: run_style(i)[0] for i, name in enumerate(histories)}
    heights = [3, 3, 0.35 + 0.22 * len(rows), 2] if rows else [3, 3, 2]
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    names = list(histories)
    shown = names if len(names) <= _MAX_RUN_CHARTS else [names[0], *names[1 - _MAX_RUN_CHARTS :]]
    top = grid[0].subgridspec(1, len(shown))
    first = None
    for i, name in enumerate(shown):
        ax = fig.add_subplot(top[0, i], sharey=first)
        first = first or ax
        _gradients(ax, name, histories[name], colours[name], label_y=i == 0)
    middle = grid[1].subgridspec(1, 2)
    _losses(fig.add_subplot(middle[0, 0]), histories, colours)
    _flow(fig.add_subplot(middle[0, 1]), histories, thresholds.window, colours)
    if rows:
        _table(fig.add_subplot(grid[2]), rows, colours)
    _diagnosis(fig.add_subplot(grid[-1]), findings)
    return fig


def _matplotlib_figure() -> Any:
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise GradWidgetError(
            "panel.snapshot() draws with matplotlib, which is not installed. Install the "
            "extra (pip install 'gradwidget[snapshot]') and run it again."
        ) from exc
    return Figure


def _gradients(ax: Any, name: str, history: History, colour: str, label_y: bool) -> None:
    s = history.series("grad_norm")
    x, y = decimate_minmax(s.steps, s.lo, s.hi, _POINTS)
    for layer, values, line in zip(history.layers, y, depth_colors(len(y)), strict=True):
        ax.plot(x, positive(values), color=line, linewidth=1.2, label=layer)
    ax.set(yscale="log", xlabel="step")
    ax.set_title(textwrap.fill(name, _TITLE_CHARS), color=colour, fontsize=10, fontweight="bold")
    ax.grid(alpha=0.3)
    if label_y:
        ax.set_ylabel("gradient norm per layer\n(input blue → output red)", fontsize=8)


def _losses(ax: Any, histories: Mapping[str, History], colours: Mapping[str, str]) -> None:
    finals, curves = {}, []
    for name, history in histories.items():
        s = history.loss_curve()
        if len(s):
            x, y = decimate_minmax(s.steps, s.lo, s.hi, _POINTS)
            ax.plot(x, y[0], linewidth=1.5, label=name, color=colours[name])
            finals[name], curves = float(s.last[-1, 0]), [*curves, y[0]]
    axis = loss_range(curves)
    ax.set_yscale("log" if axis.log else "linear")
    ax.set_ylim(axis.low, axis.high)
    ax.set_yticks(axis.ticks, [f"{t:g}" for t in axis.ticks])
    ax.minorticks_off()
    ends = np.array(list(finals.values()), np.float64)
    shown = np.isfinite(ends)
    heights = axis.value(dodge(axis.fraction(ends[shown]), 0.06))
    names = [n for n, ok in zip(finals, shown, strict=True) if ok]
    for name, height, value in zip(names, heights, ends[shown], strict=True):
        ax.text(  # x in axes fractions, y in data: just right of the plot
            1.01, height, f"{value:.3g}", transform=ax.get_yaxis_transform(),
            color=colours[name], fontsize=8, fontweight="bold", va="center",
        )  # fmt: skip
    ax.set(xlabel="step", ylabel="loss", title="Loss of each run (final value at the right)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _flow(
    ax: Any, histories: Mapping[str, History], window: int, colours: Mapping[str, str]
) -> None:
    # x is the relative depth: a fix that adds layers (BatchNorm) still spans input to output.
    for name, history in histories.items():
        recent = history.grad_norm[-window:]
        with np.errstate(all="ignore"):  # an all-NaN layer ("no gradient") is just not drawn
            medians = np.nanmedian(np.where(np.isfinite(recent), recent, np.nan), axis=0)
        depth = np.linspace(0.0, 1.0, len(medians)) if len(medians) > 1 else np.zeros(1)
        ax.plot(
            depth, positive(medians), marker="o", markersize=3, linewidth=1.5, label=name,
            color=colours[name],
        )  # fmt: skip
    ax.set_xticks([0.0, 1.0], ["input layer", "output layer"])
    ax.set(yscale="log", xlabel="depth", ylabel="median gradient norm")
    ax.set_title(f"Gradient flow: median of the last {window} samples per layer")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def _table(ax: Any, rows: Sequence[RunSummary], colours: Mapping[str, str]) -> None:
    """The comparison table as the panel shows it, each run's name in its colour."""
    ax.axis("off")
    table = format_rows(rows)
    drawn = ax.table(cellText=[list(r) for r in table.cells], colLabels=list(table.headers),
                     loc="upper left", cellLoc="left", edges="horizontal")  # fmt: skip
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(9)
    for (row, column), cell in drawn.get_celld().items():
        cell.set_text_props(ha="right" if table.numeric[column] else "left")
        cell.set_edgecolor("#cccccc")
        if row == 0:
            cell.set_text_props(fontweight="bold")
        elif column == 0:
            cell.set_text_props(color=colours.get(table.runs[row - 1], "black"), fontweight="bold")
    drawn.auto_set_column_width(list(range(len(table.headers))))


def _diagnosis(ax: Any, findings: Mapping[str, Sequence[Finding]]) -> None:
    ax.axis("off")
    lines = []
    for name, found in findings.items():
        lines.append(f"{name}: " + ("no problems found." if not found else ""))
        for f in found:
            lines += textwrap.wrap(
                f"[{f.severity.name.lower()}] {f.title}: {f.message}",
                _TEXT_WIDTH,
                initial_indent="    ",
                subsequent_indent="      ",
                max_lines=_LINES_PER_FINDING,
                placeholder=" …",
            )
    if len(lines) > _TEXT_LINES:
        hidden = len(lines) - _TEXT_LINES + 1
        lines = [*lines[: _TEXT_LINES - 1], f"… {hidden} more lines: see panel.export_html()."]
    ax.set_title("Diagnosis", loc="left")
    ax.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=8.5, family="monospace")
