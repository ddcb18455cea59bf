"""A cell running ``trainer.fit`` shows the panel's chart lines moving before the cell ends.

JupyterLab only: the callback's panel is the own-loop panel that the other browser tests check
in both front ends; what is new here is that a blocking ``fit`` in the kernel's main thread
does not stop the refresher thread from redrawing.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.browser

FIT = [
    """\
import logging

import lightning.pytorch as L
import torch
import torch.nn.functional as F

import gradwidget as gw
from gradwidget.integrations.lightning import GradWidgetCallback

torch.set_num_threads(1)  # Chromium needs the other core
logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
torch.manual_seed(0)
data = gw.datasets.digits()
x, y = torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64)


class Classifier(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = gw.models.deep_mlp(depth=10, activation="sigmoid")

    def training_step(self, batch, index):
        return F.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)""",
    # Far longer than the test: the kernel is shut down while this cell still runs.
    """\
trainer = L.Trainer(
    max_steps=1_000_000, callbacks=[GradWidgetCallback()], logger=False,
    enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
)
trainer.fit(Classifier(), loader)
print("fit returned")""",
]


@pytest.mark.parametrize("jupyter", ["lab"], indirect=True)
def test_the_chart_moves_while_the_fit_cell_runs(driver) -> None:
    driver.run_all(driver.write("fit.ipynb", FIT))
    chart = driver.page.locator(".gw-panel .gw-grad-chart").first
    first = driver.wait_for_lines(chart, timeout_s=90)
    assert driver.wait_for_change(chart, first), "the gradient chart did not move during fit"
    # Still inside fit: its cell shows the busy prompt and has printed nothing.
    fit_cell = driver.page.locator(".jp-CodeCell").nth(1)
    expect(fit_cell.locator(".jp-InputPrompt")).to_contain_text("[*]")
    assert driver.page.locator(".jp-OutputArea-output", has_text="fit returned").count() == 0
    expect(driver.page.locator(".gw-status")).to_contain_text("step")
