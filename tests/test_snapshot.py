"""panel.snapshot(): a PNG of the runs drawn headless with matplotlib (Agg, no pyplot)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from _finding import own_loop_panel, trained_panel
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.image import imread
from matplotlib.text import Text

import gradwidget as gw
from gradwidget.session.summary import summarize_history
from gradwidget.view import snapshot
from gradwidget.view._data import depth_colors


@pytest.fixture(scope="module")
def panel():
    panel = trained_panel()
    yield panel
    panel.close()


@pytest.fixture(scope="module")
def drawn(panel):
    """The figure of the panel's runs, from histories and a diagnosis computed here."""
    histories = {r.name: r.run.history for r in panel.runs}
    findings = {name: gw.diagnose(h) for name, h in histories.items()}
    figure = snapshot.draw(histories, findings, gw.Thresholds())
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return figure, np.asarray(canvas.buffer_rgba())[..., :3] / 255.0, findings


def pixels_of(image: np.ndarray, box, colour: str) -> int:
    """Pixels within 0.02 of ``colour`` inside the display box ``box`` (origin bottom left)."""
    height = image.shape[0]
    x0, y0, x1, y1 = (int(v) for v in box.extents)
    region = image[height - y1 : height - y0, x0:x1]
    return int((np.abs(region - to_rgb(colour)).max(axis=-1) < 0.02).sum())


def test_the_snapshot_is_a_png_of_the_expected_size(panel) -> None:
    for dpi, size in ((100, (1200, 900)), (50, (600, 450))):
        shot = panel.snapshot(dpi=dpi)
        assert (shot.width, shot.height) == size
        assert shot._repr_png_().startswith(b"\x89PNG\r\n\x1a\n")
        image = imread(io.BytesIO(shot.png))
        assert image.shape[:2] == size[::-1]
        assert np.ptp(image[..., :3]) > 0.5  # drawn on, not a blank page
    assert repr(shot) == "Snapshot(width=600, height=450)"  # no bytes in a cell's text
    with pytest.raises(gw.GradWidgetError, match="dpi must be a positive number"):
        panel.snapshot(dpi=0)


def test_each_runs_layers_are_drawn_in_their_colours(panel, drawn) -> None:
    figure, image, _ = drawn
    gradient_axes = figure.axes[: len(panel.runs)]
    for ax, record in zip(gradient_axes, panel.runs, strict=True):
        assert record.name in ax.get_title()
        box = ax.get_window_extent()
        for colour in depth_colors(len(record.run.history.layers)):
            assert pixels_of(image, box, colour) > 30, (record.name, colour)


def test_the_loss_and_flow_charts_draw_one_line_per_run(panel, drawn) -> None:
    figure, image, _ = drawn
    loss_ax, flow_ax = figure.axes[len(panel.runs) : len(panel.runs) + 2]
    for ax in (loss_ax, flow_ax):
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [r.name for r in panel.runs]
        for line in ax.get_lines():
            assert pixels_of(image, ax.get_window_extent(), line.get_color()) > 30


def test_the_diagnosis_text_is_in_the_figure(drawn) -> None:
    figure, _, findings = drawn
    text = "\n".join(t.get_text() for t in figure.findobj(Text))
    flat = " ".join(text.split())
    assert any(findings["baseline"])
    for name, found in findings.items():
        assert f"{name}:" in text
        for finding in found:  # the cause's first words; the report has the whole message
            assert finding.title in flat and " ".join(finding.message.split()[:12]) in flat


def test_without_matplotlib_the_error_names_the_extra(panel, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # as if not installed
    with pytest.raises(gw.GradWidgetError, match=r"gradwidget\[snapshot\]"):
        panel.snapshot()


def test_a_panel_with_nothing_recorded_says_so(panels) -> None:
    empty = panels(gw.models.deep_mlp(2, 8, in_features=2, out_features=2), gw.datasets.spirals())
    with pytest.raises(gw.GradWidgetError, match="Nothing to draw yet"):
        empty.snapshot()


def test_an_own_loop_panel_draws_its_loop() -> None:
    with own_loop_panel() as panel:
        shot = panel.snapshot(dpi=40)
    assert imread(io.BytesIO(shot.png)).shape[:2] == (360, 480)


def test_every_tutorial_ends_with_a_snapshot() -> None:
    notebooks = sorted((Path(__file__).parents[1] / "notebooks").glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        last = json.loads(path.read_text())["cells"][-1]
        assert last["cell_type"] == "code" and "".join(last["source"]).endswith(".snapshot()")


def test_a_long_diagnosis_is_cut_to_fit_under_the_charts(panel, drawn) -> None:
    _, _, findings = drawn
    many = {f"run {i}": findings["baseline"] * 3 for i in range(4)}
    histories = dict.fromkeys(many, panel.runs[0].run.history)
    figure = snapshot.draw(histories, many, gw.Thresholds())
    diagnosis = figure.axes[-1].texts[0].get_text().splitlines()
    assert len(diagnosis) == snapshot._TEXT_LINES
    assert diagnosis[-1].startswith("… ") and "more lines" in diagnosis[-1]


def test_titles_fit_their_charts_and_the_table_reads_as_in_the_panel(panel) -> None:
    long = {"baseline": panel.runs[0].run.history}
    for i, name in enumerate(("BatchNorm + ReLU + He init", "ReLU", "He init", "BatchNorm")):
        long[f"{name} ({i})"] = panel.runs[-1].run.history
    findings = {name: () for name in long}
    table_rows = [summarize_history(name, (), h, 1.0, 1.0) for name, h in long.items()]
    figure = snapshot.draw(long, findings, gw.Thresholds(), table_rows)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    top = figure.axes[:4]
    assert top[0].get_title() == "baseline"  # the reference run keeps its chart
    for ax in top:
        title, box = ax.title.get_window_extent(renderer), ax.get_window_extent(renderer)
        assert title.width <= box.width + 2, ax.get_title()
        assert "…" not in ax.get_title() and "BatchNo" not in ax.get_title().replace(
            "BatchNorm", ""
        )
    cells = figure.axes[-2].tables[0].get_celld().values()
    texts = {cell.get_text().get_text() for cell in cells}
    assert {"final loss", "first/last gradient ratio", "steps to target"} <= texts
    loss_ax = figure.axes[4]
    finals = [t.get_text() for t in loss_ax.texts]
    assert f"{long['baseline'].loss_curve().last[-1, 0]:.3g}" in finals
