"""The comparison table in words: one formatting for the panel, the report, the snapshot and
``comparison()``'s notebook display.

A reader compares runs down a column, so each column has one notation for all its rows
(accuracy in %, the gradient ratio always as a power of ten) and numbers are right-aligned.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import astuple, dataclass

from ..remedies import LABELS
from ..session.summary import COLUMNS, RunSummary

__all__ = ["HEADERS", "Table", "format_rows", "to_html"]

# Words for the RunSummary fields, in their order (COLUMNS keeps the DataFrame's names).
HEADERS: Mapping[str, str] = {
    "run": "run",
    "remedies": "fixes",
    "final_loss": "final loss",
    "accuracy": "accuracy",
    "grad_ratio": "first/last gradient ratio",
    "steps_to_threshold": "steps to target",
    "wall_time_s": "seconds",
    "training": "training settings",
}
_TEXT = frozenset({"run", "remedies", "training"})  # left-aligned; the rest are numbers
_NONE = "–"
_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclass(frozen=True)
class Table:
    """Formatted comparison: ``headers[i]`` over ``cells[r][i]``; ``numeric[i]`` right-aligns."""

    headers: tuple[str, ...]
    cells: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]
    runs: tuple[str, ...]


def format_rows(rows: Sequence[RunSummary]) -> Table:
    """Headers in words and every value formatted for its meaning.

    The training column is left out when no run used a training remedy.
    """
    keys = [c for c in COLUMNS if c != "training" or any(r.training for r in rows)]
    index = {k: COLUMNS.index(k) for k in keys}
    values = [astuple(r) for r in rows]
    cells = tuple(tuple(format_value(k, v[i]) for k, i in index.items()) for v in values)
    return Table(
        tuple(HEADERS[k] for k in keys),
        cells,
        tuple(k not in _TEXT for k in keys),
        tuple(r.run for r in rows),
    )


def format_value(column: str, value: object) -> str:
    """One cell of ``column`` (a :data:`COLUMNS` name) in words."""
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    if column == "steps_to_threshold":
        return "not reached" if missing else f"{int(value):,}"  # type: ignore[call-overload]
    if column == "remedies":
        names = [] if missing or not value else str(value).split(", ")
        return ", ".join(LABELS.get(n, n) for n in names) or "none"
    if missing:
        return _NONE
    if column == "accuracy":
        return f"{value:.1%}"
    if column == "grad_ratio":
        return power_of_ten(float(value))  # type: ignore[arg-type]
    if column == "wall_time_s":
        return f"{value:.1f}"
    if column == "final_loss":
        return f"{value:.3g}"
    return str(value)


def power_of_ten(value: float) -> str:
    """``6.1 × 10⁻⁸``: one notation for ratios that span many decades (``1.3`` near one)."""
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = value / 10.0**exponent
    if round(abs(mantissa), 1) >= 10:  # 9.96 rounds up to the next decade
        exponent, mantissa = exponent + 1, mantissa / 10
    if exponent == 0:
        return f"{mantissa:.1f}"
    return f"{mantissa:.1f} × 10{str(exponent).translate(_SUPERSCRIPT)}"


def to_html(rows: Sequence[RunSummary], colours: Mapping[str, str] | None = None) -> str:
    """An HTML table of ``rows`` (class ``gw-table``) that reads in light and dark themes.

    ``colours`` (run name -> CSS colour) puts a chip of each run's line colour before its
    name, so the table is the legend of the loss overlay.
    """
    table = format_rows(rows)
    head = "".join(_cell("th", h, n) for h, n in zip(table.headers, table.numeric, strict=True))
    body = []
    for run, cells in zip(table.runs, table.cells, strict=True):
        tds = [_cell("td", html.escape(c), n) for c, n in zip(cells, table.numeric, strict=True)]
        if colours and run in colours:
            tds[0] = _cell("td", _chip(colours[run]) + html.escape(cells[0]), False)
        body.append(f"<tr>{''.join(tds)}</tr>")
    return (
        f'<style>{_STYLE}</style><table class="gw-table"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


# No colours of its own beyond a translucent grey rule: the text keeps the theme's colour.
_STYLE = (
    ".gw-table{border-collapse:collapse;font-size:13px;line-height:1.5}"
    ".gw-table th,.gw-table td{padding:3px 16px 3px 0;white-space:nowrap;text-align:left;"
    "border-bottom:1px solid rgba(128,128,128,.35)}"
    # Headers may wrap (bottom-aligned) so that a table of many trials fits a narrow panel.
    ".gw-table th{font-weight:600;white-space:normal;vertical-align:bottom}"
    ".gw-table .gw-num{text-align:right;font-variant-numeric:tabular-nums}"
    ".gw-chip{display:inline-block;width:10px;height:10px;margin-right:6px}"
)


def _cell(tag: str, content: str, numeric: bool) -> str:
    """``content`` (already HTML) in a ``th`` or ``td``, right-aligned if ``numeric``."""
    if tag == "th":
        content = html.escape(content)
    return f'<{tag} class="gw-num">{content}</{tag}>' if numeric else f"<{tag}>{content}</{tag}>"


def _chip(colour: str) -> str:
    return f'<span class="gw-chip" style="background:{html.escape(colour)}"></span>'
