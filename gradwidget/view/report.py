"""A panel as one self-contained HTML file that opens from disk with no network.

The page holds a written summary (each run's diagnosis, the comparison table, the run
settings) and a live copy of the panel itself: its widget state, with every chart's data,
drawn by the ipywidgets HTML manager and bqplot, all inlined (see ``_assets``). The copy is
taken from the panel's widget tree as a whole, so whatever charts the panel shows, the report
shows too; its controls are disabled, since no kernel answers them.
"""

from __future__ import annotations

import datetime
import html
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import ipywidgets as w
from ipywidgets.embed import dependency_state, embed_data

from ..diagnose.rules import diagnose
from ..errors import GradWidgetError
from ..remedies import LABELS
from ..session import Session
from ..session._tables import versions
from ._assets import Script, font_faces, packed, page_scripts, unpacker
from .diagnosis_box import render
from .table import to_html

__all__ = ["default_name", "export_button", "export_html"]

_TOOLTIP = "Save this panel as one HTML file that opens in any browser, offline"
_STATE = "application/vnd.jupyter.widget-state+json"
_VIEW = "application/vnd.jupyter.widget-view+json"
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px auto; max-width: 1300px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; }
h3 { font-size: 14px; margin: 12px 0 4px; } .gw-meta { color: #666; font-size: 13px; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ddd; padding: 3px 8px; text-align: left; }
.gw-run-findings { font-size: 13px; }
"""
_PACKED = "application/x-gradwidget-gzip"  # unpacked by _static/unpack.js
_RENDER = """
window.gradwidgetRender = function () {
  requirejs(["@jupyter-widgets/html-manager/dist/libembed-amd"], function (embed) {
    // Modules come only from this page: no CDN fallback, unlike the manager's own loader.
    var loader = function (name) {
      return new Promise(function (resolve, reject) { requirejs([name], resolve, reject); });
    };
    embed.renderWidgets(document.documentElement, loader);
  });
};
"""


def default_name() -> str:
    """``gradwidget-report-<UTC time>.html``: a new name at each export."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return f"gradwidget-report-{now:%Y%m%d-%H%M%S}.html"


def export_html(session: Session, view: w.Widget, path: str | Path) -> Path:
    """Write the report of ``session`` drawn by ``view`` to ``path`` (a folder: a new file in
    it); the path. ``view`` is the widget whose live copy the page embeds."""
    if session.closed or view.comm is None:  # its widgets are gone, and with them the charts
        raise GradWidgetError(
            "This panel is closed, so its charts are gone. Export before panel.close(); the "
            "data is still in panel.runs (panel.export(path) or panel.snapshot())."
        )
    path = Path(path)
    if path.is_dir():
        path = path / default_name()
    path.parent.mkdir(parents=True, exist_ok=True)
    state = _static_state(dependency_state(view, drop_defaults=False))
    data = embed_data(views=[view], state=state)
    compare = getattr(view, "compare", None)  # the chips: each run's colour in the panel
    colours = {name: c for name, (c, _) in compare.styles.items()} if compare else {}
    body = _summary(session, colours) + _widget_view(data["view_specs"][0])
    path.write_text(_page(body, data["manager_state"]), encoding="utf-8")
    return path


def export_button(panel: Any) -> w.Button:
    """A button (css ``gw-export``) that saves the report in the working folder."""
    button = w.Button(description="Export", icon="download", tooltip=_TOOLTIP)
    button.add_class("gw-export")
    button.on_click(lambda _: _export_clicked(panel))
    return button


def _export_clicked(panel: Any) -> None:
    try:
        path = panel.export_html(Path.cwd() / default_name())
    except Exception as exc:  # the panel must survive a full disk or a missing bundle
        panel.status.show_error("The report could not be saved.", exc)
        return
    size = path.stat().st_size / 1e6
    panel.status.say(f"Saved {path.name} ({size:.1f} MB): it opens in a browser, offline.", "ok")


def _static_state(state: dict[str, Any]) -> dict[str, Any]:
    """``state`` with every control disabled: no kernel answers the copy's buttons."""
    for entry in state.values():
        if "disabled" in entry["state"]:
            entry["state"]["disabled"] = True
    return state


def _summary(session: Session, colours: Mapping[str, str]) -> str:
    """The written part: title, each run's diagnosis, the comparison (a chip of each run's
    ``colours`` entry) and the settings."""
    made = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    what = type(session.model).__name__ if session.model is not None else "followed logs"
    histories = session.histories()
    parts = [
        f"<h1>gradwidget report: {html.escape(what)}</h1>",
        f'<div class="gw-meta">{made} · {html.escape(versions())}</div>',
        "<h2>Diagnosis</h2>",
    ]
    if not histories:
        parts.append("<p>Nothing was recorded yet: train the model before exporting.</p>")
    for name, history in histories.items():
        findings = diagnose(history, session.thresholds) if len(history) else ()
        parts.append(f"<h3>{html.escape(name)}</h3>")
        parts.append(f'<div class="gw-run-findings">{render(findings, LABELS)}</div>')
    if session.runs or len(histories) > 1:
        parts.append("<h2>Comparison</h2>")
        parts.append(to_html(session.summaries(), colours))
    parts.append("<h2>Run settings</h2>")
    parts.append(_table(session.settings_rows()))
    parts.append("<h2>The panel</h2>")
    return "\n".join(parts)


def _table(rows: list[tuple[str, str]]) -> str:
    cells = (f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return '<table class="gw-settings">' + "".join(cells) + "</table>"


def _widget_view(spec: Mapping[str, Any]) -> str:
    return f'<script type="{_VIEW}">{_json(spec)}</script>'


def _page(body: str, manager_state: Mapping[str, Any]) -> str:
    """The page: scripts and widget state packed in order, then the unpacker and the render."""
    scripts = [_script(s) for s in page_scripts(manager_state["state"])]
    scripts.append(_script(Script(_json(manager_state)), _STATE))
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>gradwidget report</title>\n"
        f"<style>{_STYLE}\n{font_faces()}</style>\n" + "\n".join(scripts) + "\n"
        f"</head>\n<body>\n{body}\n<script>{_inline_js(_RENDER + unpacker())}</script>\n"
        "</body>\n</html>\n"
    )


def _script(script: Script, data_type: str | None = None) -> str:
    """One packed script; ``data_type``: the type it gets once unpacked (default: JS)."""
    name = "" if script.amd_name is None else f' data-amd-name="{html.escape(script.amd_name)}"'
    kind = "" if data_type is None else f' data-type="{data_type}"'
    return f'<script type="{_PACKED}"{name}{kind}>{packed(script.source)}</script>'


def _inline_js(source: str) -> str:
    """``source`` safe inside a ``<script>`` element.

    An HTML parser ends the element at the first ``</script`` and treats ``<!--`` specially,
    wherever they are; both can only sit in strings, regexes or comments of valid JavaScript,
    where the escaped forms mean the same.
    """
    source = re.sub(r"</(script)", r"<\\/\1", source, flags=re.IGNORECASE)
    return source.replace("<!--", "<\\!--")


def _json(value: Any) -> str:
    # "<" as \u003c: the same JSON, and nothing the HTML parser can take for a tag.
    return json.dumps(_finite(value), allow_nan=False).replace("<", "\\u003c")


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as None: JSON has no word for them, and a browser
    refuses the whole state over one (a diverged run leaves such numbers behind)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
