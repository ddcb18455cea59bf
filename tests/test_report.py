"""The offline HTML report, read back without a browser (tests/browser/ opens it in Chromium).

The oracle is the panel itself: the widget state in the file must hold the same data the
panel's widgets hold, and the written summary the diagnosis ``gw.diagnose`` gives each run.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import json
import re
from pathlib import Path

import bqplot as bq
import numpy as np
import pytest
from _finding import FIXES, STEPS, own_loop_panel, trained_panel, widget_tree

import gradwidget as gw
from gradwidget.view import _assets, report

SCRIPTS = re.compile(r"<script([^>]*)>(.*?)</script>", re.S)
PACKED = 'type="application/x-gradwidget-gzip"'
STATE_TYPE = 'data-type="application/vnd.jupyter.widget-state+json"'


@pytest.fixture(scope="module")
def panel():
    panel = trained_panel()
    yield panel
    panel.close()


@pytest.fixture(scope="module")
def exported(panel, tmp_path_factory) -> tuple[Path, str]:
    path = panel.export_html(tmp_path_factory.mktemp("report") / "finding.html")
    return path, path.read_text(encoding="utf-8")


def unpacked(page: str) -> list[tuple[str, str]]:
    """Each packed script of the page (attributes, text), unpacked as unpack.js does."""
    tags = [(a, t) for a, t in SCRIPTS.findall(page) if PACKED in a]
    return [(a, gzip.decompress(base64.b64decode(t)).decode("utf-8")) for a, t in tags]


def manager_state(page: str) -> dict:
    (state,) = [text for attributes, text in unpacked(page) if STATE_TYPE in attributes]
    return json.loads(state)["state"]


def decoded(entry: dict, name: str) -> np.ndarray:
    """A numpy array trait of a saved widget: a binary buffer, or a list (strings)."""
    spec = entry["state"][name]
    if not isinstance(spec, dict):
        return np.asarray(spec)
    buffer = next(b for b in entry["buffers"] if b["path"] == [name, "value"])
    return np.frombuffer(base64.b64decode(buffer["data"]), spec["dtype"]).reshape(spec["shape"])


def test_the_file_holds_every_widget_and_every_line_of_data(panel, exported) -> None:
    state = manager_state(exported[1])
    widgets = widget_tree(panel)
    assert {w.model_id for w in widgets} <= set(state)
    lines = [w for w in widgets if isinstance(w, bq.Lines) and np.size(w.y)]
    assert len(lines) >= 3 * len(panel.runs)  # live charts and the comparison, per run
    for line in lines:
        np.testing.assert_array_equal(decoded(state[line.model_id], "y"), line.y)
        np.testing.assert_array_equal(decoded(state[line.model_id], "x"), line.x)


def test_the_written_summary_has_each_runs_diagnosis_the_comparison_and_settings(
    panel, exported
) -> None:
    page = exported[1]
    for record in panel.runs:
        assert f"<h3>{html.escape(record.name)}</h3>" in page
        for finding in gw.diagnose(record.run.history):
            assert html.escape(finding.title) in page and html.escape(finding.message) in page
    assert any(gw.diagnose(panel.runs[0].run.history))  # the baseline's finding is shown
    for row in panel.comparison().itertuples():
        assert f"</span>{html.escape(row.run)}</td>" in page  # after its colour chip
    assert "first/last gradient ratio" in page
    assert f"<th>steps</th><td>{STEPS}</td>" in page
    assert "<th>optimizer</th><td>sgd</td>" in page


def test_every_script_is_inline_and_no_address_is_fetched(exported) -> None:
    page = exported[1]
    tags = SCRIPTS.findall(page)
    # loader, manager, bqplot, bqscales, widget state (all packed), widget view, the unpacker
    # and render call: no script ends early (an early "</script" would leave more closing tags
    # than elements)
    assert page.count("</script>") == len(tags) == 7
    assert sum(PACKED in attributes for attributes, _ in tags) == 5
    assert not any("src=" in attributes for attributes, _ in tags)
    markup = SCRIPTS.sub("", page)
    assert not re.search(r"<link\b|\bsrc=|\bhref=|url\((?!data:)", markup)
    names = {m for m in re.findall(r'data-amd-name="([^"]+)"', page)}
    assert names == {"bqplot", "bqscales"} == set(_assets.modules(manager_state(page)))
    bundle = (_assets._bundle("bqplot")).read_text(encoding="utf-8")
    assert bundle in [text for _, text in unpacked(page)]  # the installed bundle, whole
    assert "Font Awesome 5 Free" not in page.split("<script", 1)[0]  # icons from data URIs


def test_the_two_run_report_weighs_at_most_one_and_a_half_megabytes(exported) -> None:
    path, page = exported
    assert path.stat().st_size <= 1_500_000
    manager = [text for _, text in unpacked(page) if 'define("@jupyter-widgets/base",' in text]
    assert len(manager) == 1 and '"@jupyter-widgets/base7"' not in manager[0]  # ipywidgets 8


def test_widgets_saved_by_ipywidgets_7_keep_the_legacy_modules() -> None:
    def state(module: str, version: str) -> dict:
        return {"a": {"model_module": module, "model_module_version": version, "state": {}}}

    old = state("@jupyter-widgets/controls", "1.5.0")
    new = state("@jupyter-widgets/output", "1.0.0")  # the same in ipywidgets 7 and 8
    assert '"@jupyter-widgets/base7"' in _assets.page_scripts(old)[1].source
    assert '"@jupyter-widgets/base7"' not in _assets.page_scripts(new)[1].source


def test_packing_is_gzip_and_gives_the_same_bytes_each_time() -> None:
    text = "define('x', [], function () { return '\u00e9</script>'; });" * 100
    assert _assets.packed(text) == _assets.packed(text)
    assert gzip.decompress(base64.b64decode(_assets.packed(text))).decode("utf-8") == text


def test_the_copy_has_its_controls_disabled_and_the_panel_keeps_its_own(panel, exported) -> None:
    state = manager_state(exported[1])
    controls = [w for w in widget_tree(panel) if w.has_trait("disabled")]
    assert panel.train_button in controls and panel.export_button in controls
    assert all(state[w.model_id]["state"]["disabled"] for w in controls)
    assert not panel.train_button.disabled and not panel.export_button.disabled


def test_inline_text_cannot_close_its_script_element() -> None:
    source = 'a = "</script><!-- x"; b = "</SCRIPT>"'
    escaped = report._inline_js(source)
    assert "</script" not in escaped.lower() and "<!--" not in escaped
    value = {"html": "<b>x</b></script><!--"}
    assert "<" not in report._json(value) and json.loads(report._json(value)) == value
    # A browser's JSON.parse refuses NaN: non-finite numbers are saved as null.
    odd = {"min": float("nan"), "ticks": [1.0, float("inf")], "max": 2.0}
    assert json.loads(report._json(odd)) == {"min": None, "ticks": [1.0, None], "max": 2.0}


def test_the_export_button_saves_in_the_working_folder(panel, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    panel.export_button.click()
    (saved,) = tmp_path.glob("gradwidget-report-*.html")
    assert saved.name in panel.status.text and "MB" in panel.status.text
    assert manager_state(saved.read_text(encoding="utf-8"))


def test_a_failed_export_turns_the_status_red_and_the_panel_survives(
    panel, tmp_path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(report, "default_name", lambda: "a-file/report.html")
    panel.export_button.click()
    assert panel.status.text == "The report could not be saved."
    assert "FileExistsError" in panel.status.errors.outputs[-1]["text"]
    monkeypatch.undo()
    assert panel.export_html(tmp_path).parent == tmp_path  # works again; a folder gets a file
    assert panel.export_html(tmp_path / "new" / "r.html").is_file()  # parents are made


def test_a_missing_widget_bundle_is_named(panel, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(_assets, "jupyter_path", lambda _: [str(tmp_path)])
    with pytest.raises(gw.GradWidgetError, match=r"'bqplot'.*nbextensions/bqplot/index\.js"):
        panel.export_html(tmp_path / "r.html")


def test_an_own_loop_panel_exports_its_loop(tmp_path) -> None:
    with own_loop_panel() as panel:
        page = panel.export_html(tmp_path / "loop.html").read_text(encoding="utf-8")
    assert "<h3>your training loop</h3>" in page and "your own training loop" in page
    assert "<h2>Comparison</h2>" not in page and f"<td>{FIXES[0]}" not in page


def test_the_vendored_files_are_the_pinned_release() -> None:
    """scripts/vendor_js.sh pins a version and records each file's SHA-256; nothing edited them."""
    folder = Path(_assets.__file__).parents[1] / "_static" / "html-manager"
    pin, *sums = (folder / "VERSION").read_text().splitlines()
    script = (Path(__file__).parents[1] / "scripts" / "vendor_js.sh").read_text()
    version = re.search(r'VERSION="([^"]+)"', script).group(1)
    assert pin.startswith(f"@jupyter-widgets/html-manager@{version} ")
    assert len(sums) == 3
    for line in sums:
        digest, name = line.split()
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest, name
    assert (folder / "LICENSE").read_text().startswith("Copyright (c) 2015 Project Jupyter")


def test_a_closed_panel_refuses_to_export(tmp_path) -> None:
    model = gw.models.deep_mlp(2, 8, in_features=2, out_features=2)
    panel = gw.GradPanel(model, gw.datasets.spirals(n=64))
    panel.close()
    with pytest.raises(gw.GradWidgetError, match="closed"):
        panel.export_html(tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()
