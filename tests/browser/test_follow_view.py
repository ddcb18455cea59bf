"""A panel following a log in a real browser (JupyterLab 4): its charts move while the log
grows, the diagnosis speaks, and the status says when the writer has finished.

The notebook writes the log itself, from a thread, as a job would from another process: the
view reads it only through the SQLite file.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

WRITE_AND_FOLLOW = [
    """\
import tempfile, threading, time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from torch import nn

import gradwidget as gw
from gradwidget.history import History
from gradwidget.logs.writer import LogWriter

folder = Path(tempfile.mkdtemp()) / "exp1"
writer = LogWriter(folder, flush_s=0.2)
names, layer = ("0", "2", "4", "6"), nn.Linear(2, 2)
history = History(names)
writer.start([SimpleNamespace(name=n, module=layer, params=()) for n in names], history)


def job(steps=400):  # 8 s of a vanishing profile that breathes, then a clean close
    for step in range(steps):
        history.append("loss", step, 2.0 - step / 1000)
        wave = 1 + 0.5 * np.sin(step / 15)
        history.append("grad_norm", step, np.array([1e-7, 1e-5, 1e-3, 1.0]) * wave)
        time.sleep(0.02)
    writer.close()


threading.Thread(target=job, daemon=True).start()
time.sleep(0.5)  # a first commit""",
    "view = gw.GradPanel.follow(folder, refresh_hz=4)\nview",
]


@pytest.mark.parametrize("jupyter", ["lab"], indirect=True)
def test_followed_log_draws_moves_diagnoses_and_finishes(driver):
    driver.run_all(driver.write("follow.ipynb", WRITE_AND_FOLLOW))
    driver.wait_for_marker()
    view = driver.page.locator(".gw-follow")
    expect(view).to_be_visible()
    chart = view.locator(".gw-grad-chart").first
    first = driver.wait_for_lines(chart)
    assert driver.wait_for_change(chart, first), "the followed chart did not move"
    expect(view.locator(".gw-status")).to_contain_text("running: step")
    expect(view.locator(".gw-diagnosis")).to_contain_text("Vanishing gradients", timeout=15_000)
    expect(view.locator(".gw-status")).to_contain_text("finished at step 399", timeout=30_000)
    driver.screenshot("follow", view)
    assert driver.console.unexpected() == []
