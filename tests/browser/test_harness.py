"""The harness itself, before any gradwidget code: a plain bqplot chart animated from a kernel
thread and a stop button, in both front ends. If these fail, the panel tests cannot be trusted."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.browser

ANIMATION = [
    """\
import threading
import time

import bqplot as bq
import ipywidgets as widgets
import numpy as np

x = np.arange(50, dtype=np.float32)
line = bq.Lines(
    x=x,
    y=np.sin(x / 5),
    scales={"x": bq.LinearScale(), "y": bq.LinearScale(min=-1.5, max=1.5)},
)
figure = bq.Figure(marks=[line])
figure.add_class("gw-harness-chart")
stop = widgets.Button(description="Stop")
stop.add_class("gw-harness-stop")
halt = threading.Event()
stop.on_click(lambda _: halt.set())


def animate():
    phase = 0.0
    while not halt.is_set() and phase < 60:
        phase += 0.1
        line.y = np.sin(x / 5 + phase).astype(np.float32)
        time.sleep(0.1)


threading.Thread(target=animate, daemon=True).start()
widgets.VBox([stop, figure])""",
]


def test_thread_animates_chart_until_stop_is_clicked(driver):
    driver.run_all(driver.write("harness.ipynb", ANIMATION))
    driver.wait_for_marker()
    chart = driver.page.locator(".gw-harness-chart")
    first = driver.wait_for_lines(chart)
    assert driver.wait_for_change(chart, first), "the chart did not animate"

    driver.page.click(".gw-harness-stop")
    assert driver.wait_for_standstill(chart), "the chart kept moving after Stop"
    assert driver.console.unexpected() == []


def test_cell_error_is_reported_with_its_traceback(driver):
    driver.run_all(driver.write("broken.ipynb", ["1 / 0"]))
    with pytest.raises(pytest.fail.Exception, match="ZeroDivisionError"):
        driver.wait_for_marker(timeout_s=60)
