"""The panel in a real browser while it trains: charts move, the diagnosis speaks, Stop stops,
and the fix buttons start a second run that joins the comparison. JupyterLab 4 and Notebook 7.

A dedicated notebook starts a long run and does not wait for it, so the checks see training in
progress (the tutorial waits for each run, so by the time it ends nothing moves any more).
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.browser

LONG_RUN = [
    """\
import torch

torch.set_num_threads(1)  # Chromium needs the other core
import gradwidget as gw

torch.manual_seed(0)
model = gw.models.deep_mlp(depth=10, width=64, activation="sigmoid")
panel = gw.GradPanel(model, gw.datasets.digits(), steps=200_000)
panel""",
    "panel.train()  # no wait(): the run goes on in the background",
]
CHARTS = ("gw-grad-chart", "gw-flow-chart", "gw-loss-chart", "gw-act-chart", "gw-heatmap")


@pytest.fixture
def training(driver):
    """The long-run notebook, executed to its end while its run trains on."""
    driver.run_all(driver.write("live.ipynb", LONG_RUN))
    driver.wait_for_marker()
    yield driver
    # Leave no training thread behind, even if the test failed before pressing Stop.
    driver.page.locator(".gw-stop").click(timeout=5_000)


def test_panel_renders_its_charts_and_they_move_while_training(training):
    panel = training.page.locator(".gw-panel")
    expect(panel).to_be_visible()
    for css in CHARTS:
        expect(panel.locator(f".{css}").first).to_be_visible(timeout=30_000)
    chart = panel.locator(".gw-grad-chart").first
    first = training.wait_for_lines(chart)
    assert training.wait_for_change(chart, first), "the gradient chart did not move"
    training.wait_for_lines(panel.locator(".gw-flow-chart").first, timeout_s=15)
    expect(panel.locator(".gw-status")).to_contain_text("steps/s")


def test_diagnosis_names_vanishing_gradients_while_training(training):
    diagnosis = training.page.locator(".gw-diagnosis")
    expect(diagnosis).to_contain_text("Vanishing gradients", timeout=30_000)
    training.screenshot("panel-training", training.page.locator(".gw-panel"))


def test_stop_freezes_the_charts(training):
    chart = training.page.locator(".gw-grad-chart").first
    training.wait_for_change(chart, training.wait_for_lines(chart))
    training.page.locator(".gw-stop").click()
    assert training.wait_for_standstill(chart), "the gradient chart kept moving after Stop"
    expect(training.page.locator(".gw-status")).to_contain_text("Stopped after")


def test_fixes_and_retrain_add_a_second_run_to_the_comparison(training):
    retrain_with_relu_and_he(training.page)
    compare = training.page.locator(".gw-compare")
    cells = compare.locator(".gw-grad-chart")
    expect(cells).to_have_count(2, timeout=30_000)
    for i in range(2):  # the stopped baseline's chart as well as the new run's
        training.wait_for_lines(cells.nth(i), timeout_s=15)
    training.wait_for_lines(compare.locator(".gw-compare-loss"), timeout_s=15)
    expect(compare.locator(".gw-compare-table")).to_contain_text("ReLU + He init")
    training.screenshot("compare-live", compare)


def test_no_unexpected_console_errors_through_train_stop_retrain(training):
    # Only Notebook 7's known harmless errors are allowed (see ALLOWED_CONSOLE in conftest).
    chart = training.page.locator(".gw-grad-chart").first
    training.wait_for_change(chart, training.wait_for_lines(chart))
    retrain_with_relu_and_he(training.page)
    expect(training.page.locator(".gw-compare .gw-grad-chart")).to_have_count(2, timeout=30_000)
    errors = training.console.unexpected()
    assert errors == [], f"{len(errors)} console errors, the first ones: {errors[:5]}"


def retrain_with_relu_and_he(page: Page) -> None:
    """Stop the baseline, toggle ReLU and He init, press Retrain with fixes."""
    page.locator(".gw-stop").click()
    for fix in ("relu", "he_init"):
        page.locator(f".gw-fix-{fix}").click()
    page.locator(".gw-retrain").click()  # waits until the stopped run re-enables it
