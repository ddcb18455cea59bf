"""Find a fix clicked in JupyterLab 4 on the tutorial's 10-layer sigmoid MLP: the search trains
a baseline, its trials join the comparison (named "... (trial)"), the winner is announced with
numbers in the status line, and Train is usable again at the end. The screenshot is the
README's picture of Find a fix (``make screenshots`` copies it to docs/img/autofix.png)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

TUTORIAL_NET = [
    "import torch\nimport gradwidget as gw\ntorch.set_num_threads(1)",
    "torch.manual_seed(0)\n"
    "panel = gw.GradPanel(\n"
    '    gw.models.deep_mlp(depth=10, activation="sigmoid"), gw.datasets.digits(),\n'
    "    steps=600, lr=0.1,\n"
    ")\n"
    "panel",
]
SEARCH_S = 180  # about 10-30 s alone; a browser and other work share the two cores


@pytest.fixture
def browser_context_args(browser_context_args: dict) -> dict:
    # JupyterLab scrolls inside its own panes: only a tall viewport holds the whole panel.
    return {**browser_context_args, "viewport": {"width": 1400, "height": 4400}}


@pytest.mark.parametrize("jupyter", ["lab"], indirect=True)
def test_find_a_fix_shows_its_trials_and_announces_the_winner(driver):
    driver.run_all(driver.write("autofix.ipynb", TUTORIAL_NET))
    driver.wait_for_marker()
    panel = driver.page.locator(".gw-panel")
    expect(panel).to_have_count(1)
    train = panel.locator(".gw-train")
    expect(train).to_be_enabled()

    panel.locator(".gw-autofix").click()
    expect(train).to_be_disabled(timeout=10_000)  # the search owns the panel while it runs
    table = panel.locator(".gw-compare-table")
    expect(table.locator("tbody tr", has_text="(trial)").first).to_be_attached(
        timeout=SEARCH_S * 1000
    )
    status = panel.locator(".gw-status")
    try:
        expect(status).to_contain_text("gone", timeout=SEARCH_S * 1000)
    except AssertionError:
        driver.screenshot("autofix-failed", panel)
        raise
    verdict = status.inner_text()
    runs = table.locator("tbody tr td:first-child").all_inner_texts()
    print(f"verdict: {verdict!r}\nruns: {runs}")
    assert "test accuracy" in verdict, verdict
    assert runs[0].strip() == "baseline", runs
    trials = [r for r in runs if r.strip().endswith("(trial)")]
    assert trials, runs
    # every run, trials included, has its small chart; the winner's full run is the last one
    expect(panel.locator(".gw-compare .gw-grad-chart")).to_have_count(len(runs))
    expect(train).to_be_enabled(timeout=30_000)
    expect(panel.locator(".gw-autofix")).to_be_enabled()
    driver.wait_for_standstill(panel.locator(".gw-loss-overlay"))
    driver.page.mouse.move(0, 0)  # no chart's hover toolbar over its title
    driver.screenshot("autofix", panel)
    # a table of many trials still fits the panel: no column cut off at its right edge
    overflow = table.evaluate(
        "(t) => t.querySelector('table').getBoundingClientRect().right"
        " - t.getBoundingClientRect().right"
    )
    assert overflow <= 0.5, overflow
    # each trial shown in turn swaps the layers on show: no point ever off a chart's axes
    assert driver.console.unexpected() == [], sorted({e[:70] for e in driver.console.errors})
