"""What a reader sees at a glance, measured in the page (JupyterLab 4 and Notebook 7).

The tutorial's sigmoid MLP with its four fixes: the comparison table reads in words (headers
apart, no underscores, accuracy in %), the loss overlay keeps the stuck baseline and the best
fix far apart and labels each final value, and hovering a gradient line names it. A GPT-2-like
model in an own loop: every chart draws something or says why not, and the update-ratio chart
has lines.
"""

from __future__ import annotations

import itertools
import re
import time

import pytest
from playwright.sync_api import expect
from test_real_models import gpt2_own_loop, set_theme

pytestmark = pytest.mark.browser

# Header texts (not their cells' padding), and the accuracy column's cells.
TABLE = """(table) => {
    const box = (el) => { const r = document.createRange(); r.selectNodeContents(el);
                          return r.getBoundingClientRect(); };
    const heads = [...table.querySelectorAll("thead th")];
    const boxes = heads.map(box);
    const gaps = boxes.slice(1).map((b, i) => b.left - boxes[i].right);
    const column = heads.findIndex((th) => th.textContent.trim() === "accuracy");
    const rows = [...table.querySelectorAll("tbody tr")];
    return {
        headers: heads.map((th) => th.textContent.trim()),
        gaps,
        accuracy: rows.map((tr) => tr.children[column].textContent.trim()),
        final_loss: rows.map((tr) => tr.children[2].textContent.trim()),
        runs: rows.map((tr) => tr.children[0].textContent.trim()),
    };
}"""
# Where each loss line ends, as a share of the plot height (0 top), and the value labels.
OVERLAY = """(figure) => {
    const plot = figure.querySelector(".plotarea_background");
    const height = plot.getBBox().height;
    const ends = [...figure.querySelectorAll("g.curve path.line")]
        .filter((p) => (p.getAttribute("d") || "").length > 10)
        .map((p) => p.getPointAtLength(p.getTotalLength()).y / height);
    const labels = [...figure.querySelectorAll("text")]
        .filter((t) => !t.closest("g.axis") && /^[0-9.e+-]+$/.test(t.textContent.trim()))
        .map((t) => { const r = t.getBoundingClientRect();
                      return {text: t.textContent.trim(), top: r.top, bottom: r.bottom,
                              left: r.left, right: r.right}; });
    return {ends, labels};
}"""
# A point in the middle of the first gradient line (the input's), in page coordinates.
LINE_POINT = """(figure) => {
    const paths = [...figure.querySelectorAll("g.curve path.line")]
        .filter((p) => (p.getAttribute("d") || "").length > 10
                       && getComputedStyle(p).fill === "none");
    const path = paths.find((p) => getComputedStyle(p).stroke === "rgb(58, 110, 216)");
    const point = path.getPointAtLength(path.getTotalLength() * 0.6);
    const screen = point.matrixTransform(path.getScreenCTM());
    return {x: screen.x, y: screen.y};
}"""
# Each cell of the dashboard: does it draw data, or say in a sentence why not?
CELLS = """(board) => [...board.children].map((cell) => {
    const lines = [...cell.querySelectorAll("g.curve path.line")]
        .some((p) => (p.getAttribute("d") || "").length > 10);
    const bars = [...cell.querySelectorAll("g.bargroup rect, rect.bar")]
        .some((r) => r.getBoundingClientRect().height > 0.5);
    const heat = cell.querySelectorAll(".gw-heatmap rect").length > 20;
    const notes = [...cell.querySelectorAll(".gw-empty-note")]
        .filter((n) => n.offsetParent !== null && n.textContent.trim().length > 20);
    const title = cell.querySelector(".mainheading");
    return {title: title ? title.textContent : "", drawn: lines || bars || heat,
            note: notes.length ? notes[0].textContent.trim() : ""};
})"""


def test_the_tutorial_comparison_reads_at_a_glance(driver, repo_notebooks):
    driver.run_all(driver.copy(repo_notebooks / "01_vanishing_gradients.ipynb"))
    driver.wait_for_marker(timeout_s=240)
    panel = driver.page.locator(".gw-panel")
    compare = panel.locator(".gw-compare")
    overlay = compare.locator(".gw-loss-overlay")
    driver.wait_for_lines(overlay)
    expect(overlay.locator("g.curve path.line")).to_have_count(5)
    cells = compare.locator(".gw-grad-chart")
    expect(cells).to_have_count(5)
    for i in range(5):  # every run's small chart was built and drawn
        driver.wait_for_lines(cells.nth(i), timeout_s=15)
    driver.screenshot("readable-compare", compare)

    table = compare.locator(".gw-compare-table table").evaluate(TABLE)
    print(f"{driver.server.app}: {table}")
    assert len(table["runs"]) == 5
    assert min(table["gaps"]) >= 8, table  # no two header texts closer than 8 px
    assert not any("_" in h for h in table["headers"]), table
    assert all(re.fullmatch(r"\d{1,3}\.\d%", a) for a in table["accuracy"]), table

    drawn = overlay.evaluate(OVERLAY)
    print(f"{driver.server.app}: {drawn}")
    ends = drawn["ends"]  # 0 at the top: the stuck baseline high, the best fix low
    assert max(ends) - min(ends) >= 0.25, drawn
    assert sorted(label["text"] for label in drawn["labels"]) == sorted(table["final_loss"])
    boxes = sorted(drawn["labels"], key=lambda b: b["top"])
    assert all(a["bottom"] <= b["top"] + 0.5 for a, b in itertools.pairwise(boxes)), boxes

    grad = panel.locator(".gw-dashboard .gw-grad-chart")
    grad.scroll_into_view_if_needed()
    point = grad.evaluate(LINE_POINT)
    driver.page.mouse.move(point["x"], point["y"])
    tooltip = driver.page.locator(".bqplot_mark_tooltip, .bqplot_tooltip_div").filter(
        has_text="from the input"
    )
    expect(tooltip.first).to_be_visible(timeout=5_000)
    words = tooltip.first.inner_text()
    print(f"{driver.server.app}: tooltip {words!r}")
    assert re.search(r"1st of \d+ from the input\): gradient norm \S+ at step [\d,]+", words)
    driver.screenshot("readable-tooltip", grad)


def test_gpt2_own_loop_explains_every_empty_chart_and_shows_update_ratios(driver):
    driver.run_all(driver.write("gpt2-readable.ipynb", gpt2_own_loop(12, 64)))
    driver.wait_for_marker()
    panel = driver.page.locator(".gw-panel")
    updates = panel.locator(".gw-update-chart")
    try:  # the 1e-3 guide, and lines once two samples of update ratios are in
        wait_for_paths(driver, updates, at_least=3, timeout_s=90)
    except BaseException:
        print(panel.locator(".gw-status").inner_text(), driver.console.errors[:8])
        driver.screenshot("readable-gpt2-failed", panel)
        raise
    driver.wait_for_lines(panel.locator(".gw-loss-chart"), timeout_s=15)
    board = panel.locator(".gw-dashboard")
    expect(panel.locator(".gw-heatmap rect").nth(20)).to_be_attached(timeout=15_000)
    cells = board.evaluate(CELLS)
    print(f"{driver.server.app}: {cells}")
    driver.screenshot("readable-gpt2", panel)
    assert len(cells) == 6, cells
    assert all(c["drawn"] or c["note"] for c in cells), cells
    assert any("nothing can saturate" in c["note"] for c in cells), cells
    # no accuracy axis without accuracy: the loss chart has two axes, step and loss
    labels = panel.locator(".gw-loss-chart g.axis text.axislabel").all_inner_texts()
    assert "accuracy" not in labels, labels
    if driver.server.app == "lab":  # the sentences must read on the dark theme too
        set_theme(driver, "JupyterLab Dark", light=False)
        try:
            driver.page.wait_for_timeout(1000)
            driver.screenshot("readable-gpt2-dark", panel)
            note = panel.locator(".gw-empty-note div").first
            colour = note.evaluate("(el) => getComputedStyle(el).color")
            channels = [int(c) for c in re.findall(r"\d+", colour)[:3]]
            assert sum(channels) / 3 > 150, colour  # light text: it follows the theme
        finally:  # the server keeps its settings for the next test: let it save them
            set_theme(driver, "JupyterLab Light", light=True)
            driver.page.wait_for_timeout(1500)


def wait_for_paths(driver, chart, at_least: int, timeout_s: float) -> None:
    """Wait until ``chart`` draws ``at_least`` non-empty lines."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(len(d) > 10 for d in driver.line_paths(chart)) >= at_least:
            return
        driver.page.wait_for_timeout(250)
    pytest.fail(f"fewer than {at_least} lines in {chart} after {timeout_s} s")
