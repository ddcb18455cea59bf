"""The exported report, alone in an empty folder, opened from file:// with the network cut.

Chromium must unpack the file's packed scripts (at most 1.5 MB in all) and draw every chart of
the panel and of the comparison from the data inside the file: the expected lines are counted
from the panel's own bqplot marks, so the check follows whatever charts the panel shows. No
request may leave the file, and the page logs no error.
"""

from __future__ import annotations

import shutil

import bqplot as bq
import numpy as np
import pytest
from _finding import trained_panel, widget_tree
from playwright.sync_api import Page, Request, Route

import gradwidget as gw
from gradwidget.view.diagnosis_box import HEALTHY

pytestmark = pytest.mark.browser

# Per figure of the page: its title, its drawn curves (legend samples excluded: they sit
# outside g.curve), its heat-map cells and its bars.
DRAWN = """() => [...document.querySelectorAll(".bqplot.figure")].map(figure => ({
    title: figure.querySelector("text.mainheading")?.textContent ?? "",
    curves: [...figure.querySelectorAll("g.curve path.line")]
        .filter(path => (path.getAttribute("d") || "").includes("L")).length,
    cells: figure.querySelectorAll("g.heatmap rect, rect.heatmapcell").length,
    bars: figure.querySelectorAll("rect.bar").length,
}))"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """The report of a trained panel, copied alone into a fresh folder; and the panel."""
    panel = trained_panel()
    try:
        written = panel.export_html(tmp_path_factory.mktemp("export") / "finding.html")
        alone = tmp_path_factory.mktemp("alone") / written.name
        shutil.copyfile(written, alone)
        yield alone, panel
    finally:
        panel.close()


def expected_charts(panel: gw.GradPanel) -> list[dict]:
    """What each bqplot figure of the panel must draw, from its marks' data."""
    charts = []
    for figure in (w for w in widget_tree(panel) if isinstance(w, bq.Figure)):
        lines = [m for m in figure.marks if isinstance(m, bq.Lines) and np.size(m.x) >= 2]
        heat = [m for m in figure.marks if isinstance(m, bq.GridHeatMap)]
        bars = [m for m in figure.marks if isinstance(m, bq.Bars)]
        charts.append(
            {
                "title": figure.title,
                "curves": sum(np.atleast_2d(m.y).shape[0] for m in lines),
                "cells": sum(np.size(m.color) for m in heat),
                "bars": sum(np.size(m.y) for m in bars),
            }
        )
    return charts


def test_the_report_draws_every_chart_offline(page: Page, report) -> None:
    path, panel = report
    requests: list[str] = []
    errors: list[str] = []

    def only_files(route: Route, request: Request) -> None:
        requests.append(request.url)
        if request.url.startswith("file://"):
            route.continue_()
        else:
            route.abort()

    assert path.stat().st_size <= 1_500_000  # scripts packed: unpacked by the browser
    page.context.set_offline(True)  # and every request that is not the file itself aborted
    page.route("**/*", only_files)
    page.on("pageerror", lambda error: errors.append(f"{error.name}: {error.message}"))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(path.as_uri())

    expected = sorted(expected_charts(panel), key=lambda c: c["title"])
    assert len(expected) >= 3 + len(panel.runs)  # the live charts, and one cell per run
    page.wait_for_function(
        f"() => ({DRAWN})().filter(f => f.curves > 0).length >= "
        f"{sum(c['curves'] > 0 for c in expected)}",
        timeout=30_000,
    )
    drawn = sorted(page.evaluate(DRAWN), key=lambda c: c["title"])
    assert [c["title"] for c in drawn] == [c["title"] for c in expected]
    assert drawn == expected

    text = page.inner_text("body")
    for record in panel.runs:
        for finding in gw.diagnose(record.run.history):
            assert finding.title in text
    assert "Vanishing gradients" in text  # the baseline's finding, the point of the report
    assert page.inner_text(".gw-diagnosis").strip().endswith(HEALTHY)  # the fix on show
    table = page.inner_text(".gw-compare-table")
    assert all(record.name in table for record in panel.runs)
    assert page.locator(".gw-unpack-error").count() == 0
    assert requests == [path.as_uri()], "the page asked for something besides itself"
    assert errors == []
