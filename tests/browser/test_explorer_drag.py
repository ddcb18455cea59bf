"""The chain-rule explorer in a real browser (JupyterLab 4): dragging the depth slider redraws
the gradient chart within a second, and Train this opens a panel below the charts."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

EXPLORER = [
    """\
import torch

torch.set_num_threads(1)  # Chromium needs the other core
import gradwidget as gw

explorer = gw.explore(depth=30, activation="sigmoid")
explorer""",
]
# The first data line of a figure (not its legend's), read inside the page.
FIRST_LINE = "(css) => document.querySelector(css + ' g.curve path.line')?.getAttribute('d')"
CHANGED = f"([css, before]) => ({FIRST_LINE})(css) !== before"
CHART = ".gw-explorer .gw-explorer-grad"


@pytest.mark.parametrize("jupyter", ["lab"], indirect=True)
def test_dragging_the_depth_slider_redraws_the_chart_within_a_second(driver):
    driver.run_all(driver.write("explorer.ipynb", EXPLORER))
    driver.wait_for_marker()
    explorer = driver.page.locator(".gw-explorer")
    for css in ("gw-explorer-grad", "gw-explorer-slope", "gw-explorer-predicted"):
        driver.wait_for_lines(explorer.locator(f".{css}"))
    expect(explorer.locator(".gw-explorer-sentence")).to_contain_text("30 sigmoid layers")
    driver.page.wait_for_timeout(500)  # let the figures settle for the picture
    driver.screenshot("explorer", explorer)

    before = driver.page.evaluate(FIRST_LINE, CHART)
    handle = explorer.locator(".gw-explorer-depth .noUi-handle")
    box = handle.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    driver.page.mouse.move(x, y)
    driver.page.mouse.down()
    for dx in range(4, 64, 4):  # a drag of 60 pixels, as a hand makes it
        driver.page.mouse.move(x + dx, y)
    # Within a second of the drag, not after a backlog of every value it passed.
    driver.page.wait_for_function(CHANGED, arg=[CHART, before], timeout=1_000, polling=20)
    driver.page.mouse.up()

    readout = explorer.locator(".gw-explorer-depth .widget-readout")
    depth = int(readout.inner_text())
    assert depth > 30
    sentence = explorer.locator(".gw-explorer-sentence")
    expect(sentence).to_contain_text(f"{depth} sigmoid layers", timeout=5_000)

    explorer.locator(".gw-explorer-train").click()
    panel = explorer.locator(".gw-panel")
    expect(panel).to_be_visible(timeout=15_000)
    expect(panel.locator(".gw-train")).to_be_enabled()
    driver.screenshot("explorer-train-this", explorer)
    assert driver.console.unexpected() == []
