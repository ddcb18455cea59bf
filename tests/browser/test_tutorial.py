"""The tutorial (notebooks/01) run top to bottom in JupyterLab 4 and Notebook 7, small
(``GW_STEPS`` from the server's environment): the panel renders and compares every run."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

# The runs the tutorial trains: the baseline, then each retrain's remedies joined with " + ".
RUNS = ("baseline", "ReLU", "He init", "ReLU + He init", "BatchNorm")


def test_tutorial_runs_and_shows_the_comparison_of_every_run(driver, repo_notebooks):
    driver.run_all(driver.copy(repo_notebooks / "01_vanishing_gradients.ipynb"))
    driver.wait_for_marker(timeout_s=240)

    panel = driver.page.locator(".gw-panel")
    expect(panel).to_have_count(1)
    panel.scroll_into_view_if_needed()
    driver.wait_for_lines(panel.locator(".gw-grad-chart").first)
    for css in ("gw-flow-chart", "gw-loss-chart", "gw-act-chart", "gw-heatmap"):
        expect(panel.locator(f".{css}").first).to_be_visible()
    driver.screenshot("tutorial-panel", panel)

    compare = panel.locator(".gw-compare")
    expect(compare.locator(".gw-grad-chart")).to_have_count(len(RUNS))
    table = compare.locator(".gw-compare-table")
    for run in RUNS:
        expect(table).to_contain_text(run)
    driver.screenshot("tutorial-compare", compare)
