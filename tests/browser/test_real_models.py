"""The panel on real-sized models, read from the DOM in JupyterLab 4 and Notebook 7.

A GPT-2-like transformer (75 layers, and 501, from a ``transformers`` config, no download)
trained in the user's own loop on a thread, and a ResNet-like CNN with stages trained by the
panel. The checks are what a person needs to read the panel: no two tick labels of an axis
overlap, at most 16 curves in the gradient chart, a heat map with a real colour range, the
diagnosis and the fix controls near the top, and lines that move while training.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

GPT2_OWN_LOOP = [
    """\
import threading, time
import torch

torch.set_num_threads(1)  # Chromium needs the other core
import gradwidget as gw
from transformers import GPT2Config, GPT2LMHeadModel

torch.manual_seed(0)
config = GPT2Config(n_layer=N_LAYER, n_embd=WIDTH, n_head=4, vocab_size=256, n_positions=64,
                    bos_token_id=0, eos_token_id=0)
model = GPT2LMHeadModel(config)
panel = gw.watch(model)""",
    """\
opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

def loop(seconds=45.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        x = torch.randint(0, 256, (4, 32))
        opt.zero_grad()
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        panel.capture(loss)
        opt.step()

threading.Thread(target=loop, daemon=True).start()""",
]

RESNET_MANAGED = [
    """\
import torch
from torch import nn

torch.set_num_threads(1)
import gradwidget as gw


class Basic(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout)
        self.conv2, self.bn2 = nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout)
        self.shortcut = nn.Identity() if cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNetLike(nn.Module):
    def __init__(self, widths=(16, 32, 64)):
        super().__init__()
        self.stem = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 16, 3, padding=1),
                                  nn.BatchNorm2d(16), nn.ReLU())
        cins = (16, *widths[:-1])
        self.stages = nn.Sequential(*(nn.Sequential(Basic(a, b), Basic(b, b))
                                      for a, b in zip(cins, widths)))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        return self.head(self.stages(self.stem(x)))


torch.manual_seed(0)
panel = gw.GradPanel(ResNetLike(), gw.datasets.digits(), steps=200_000, lr=0.05)
panel""",
    "panel.train()  # no wait(): the run goes on in the background",
]

# What a person sees, measured in the page: overlapping tick labels (pairs, per axis),
# curves of the gradient chart, distinct heat-map fills, and where things sit in the panel.
MEASURE = """(panel) => {
    const top = panel.getBoundingClientRect().top;
    const below = (css) => {
        const el = panel.querySelector(css);
        return el ? el.getBoundingClientRect().bottom - top : null;
    };
    let overlaps = 0;
    const pairs = [];
    for (const axis of panel.querySelectorAll("g.axis")) {
        const texts = [...axis.querySelectorAll("g.tick text")]
            .filter((t) => t.textContent.trim() && getComputedStyle(t).opacity !== "0")
            .filter((t) => t.getBoundingClientRect().width > 0);
        const boxes = texts.map((t) => t.getBoundingClientRect());
        for (let i = 0; i < boxes.length; i++) {
            for (let j = i + 1; j < boxes.length; j++) {
                const a = boxes[i], b = boxes[j];
                if (a.left < b.right - 0.5 && b.left < a.right - 0.5
                    && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5) {
                    overlaps++;
                    const chart = axis.closest(".bqplot");
                    pairs.push([chart && chart.className.baseVal !== undefined
                        ? "" : (chart?.className || ""), texts[i].textContent,
                        texts[j].textContent]);
                }
            }
        }
    }
    const grad = panel.querySelector(".gw-grad-chart");
    const cells = [...panel.querySelectorAll(".gw-heatmap rect")]
        .map((r) => getComputedStyle(r).fill);
    const fills = new Set(cells);
    const counts = {};
    for (const c of cells) counts[c] = (counts[c] || 0) + 1;
    const topShare = cells.length ? Math.max(...Object.values(counts)) / cells.length : 1;
    return {
        overlaps,
        pairs: pairs.slice(0, 6),
        curves: grad ? grad.querySelectorAll("g.curve path.line").length : 0,
        heat_fills: fills.size,
        heat_top_share: topShare,
        height: panel.getBoundingClientRect().height,
        diagnosis_bottom: below(".gw-diagnosis"),
        fixes_bottom: below(".gw-retrain"),
    };
}"""


def measure(driver) -> dict:
    """The numbers of :data:`MEASURE` for the page's panel, printed for the report."""
    numbers = driver.page.locator(".gw-panel").evaluate(MEASURE)
    print(f"{driver.server.app}: {numbers}")
    return numbers


def check_readable(driver, name: str) -> dict:
    """Assert what a person needs; the charts are live, so wait for a full set of data."""
    panel = driver.page.locator(".gw-panel")
    chart = panel.locator(".gw-grad-chart").first
    try:
        first = driver.wait_for_lines(chart)
    except BaseException:
        status = panel.locator(".gw-status").inner_text()
        print(f"status: {status}; console: {driver.console.errors[:5]}")
        driver.screenshot(f"{name}-failed", panel)
        raise
    assert driver.wait_for_change(chart, first), "the gradient chart did not move"
    driver.wait_for_lines(panel.locator(".gw-flow-chart").first, timeout_s=15)
    expect(panel.locator(".gw-heatmap rect").nth(20)).to_be_attached(timeout=15_000)
    numbers = measure(driver)
    driver.screenshot(name, panel)  # before the checks: a failure's picture helps most
    assert numbers["overlaps"] == 0, numbers
    assert 2 <= numbers["curves"] <= 16, numbers
    # a real colour range, not one flat colour: many fills, none covering most of the map
    assert numbers["heat_fills"] >= 8 and numbers["heat_top_share"] < 0.5, numbers
    assert numbers["diagnosis_bottom"] <= 900 and numbers["fixes_bottom"] <= 900, numbers
    return numbers


def gpt2_own_loop(blocks: int, width: int) -> list[str]:
    """The own-loop notebook on a GPT-2-like model of ``blocks`` blocks (6 layers each)."""
    first = GPT2_OWN_LOOP[0].replace("N_LAYER", str(blocks)).replace("WIDTH", str(width))
    return [first, *GPT2_OWN_LOOP[1:]]


def test_gpt2_in_an_own_loop_is_readable(driver):
    driver.run_all(driver.write("gpt2.ipynb", gpt2_own_loop(12, 64)))  # 75 layers
    driver.wait_for_marker()
    numbers = check_readable(driver, "gpt2-own-loop")
    assert numbers["height"] <= 1200, numbers
    panel = driver.page.locator(".gw-panel")
    if driver.server.app == "lab":  # the colours must read on the dark theme too
        set_theme(driver, "JupyterLab Dark", light=False)
        try:
            driver.page.wait_for_timeout(1000)
            driver.screenshot("gpt2-dark", panel)
        finally:  # the server keeps its settings for the next test: let it save them
            set_theme(driver, "JupyterLab Light", light=True)
            driver.page.wait_for_timeout(1500)


def test_a_500_layer_gpt2_stays_readable_and_live(driver):
    # 83 blocks: 501 layers, about 130 ms a step here. The refresher spaces redraws by their
    # cost (0.5 % of a core, but at least one a second); the chart must still move.
    driver.run_all(driver.write("gpt2-500.ipynb", gpt2_own_loop(83, 16)))
    driver.wait_for_marker()
    numbers = check_readable(driver, "gpt2-500-layers")
    assert numbers["height"] <= 1200, numbers


def set_theme(driver, theme: str, light: bool) -> None:
    """Switch JupyterLab's theme and wait until the page shows it."""
    driver.page.evaluate(
        "(theme) => jupyterapp.commands.execute('apputils:change-theme', {theme})", theme
    )
    page_light = "true" if light else "false"
    expect(driver.page.locator(f"body[data-jp-theme-light='{page_light}']")).to_be_attached()


def test_resnet_trained_by_the_panel_is_readable(driver):
    driver.run_all(driver.write("resnet.ipynb", RESNET_MANAGED))
    driver.wait_for_marker()
    try:
        check_readable(driver, "resnet-managed")
    finally:
        driver.page.locator(".gw-stop").click(timeout=5_000)
