"""Hardening, data and loss: bad input fails the same way headless and in the panel.

Each case runs twice: ``gw.train`` must raise the documented error type with a message that
names the problem and the fix, and a ``GradPanel`` on the same model and data must show that
very message, keep its error box, and train again once the settings are corrected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

import gradwidget as gw

torch.set_num_threads(1)

ROWS, FEATURES, CLASSES, STEPS = 40, 6, 3, 6
G = torch.Generator().manual_seed(0)
X, Y = torch.randn(ROWS, FEATURES, generator=G), torch.randint(0, CLASSES, (ROWS,), generator=G)
INF_X = X.clone()
INF_X[7, 1] = float("inf")


class CorruptRecord(torch.utils.data.Dataset):
    """A dataset whose record 30 cannot be read: the DataLoader raises in its fourth batch."""

    def __len__(self) -> int:
        return ROWS

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i == 30:
            raise ValueError("corrupt record 30")
        return X[i], Y[i]


def broken_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    raise ValueError("no class weights")


def model(activation: str = "tanh") -> nn.Sequential:
    torch.manual_seed(0)
    return gw.models.deep_mlp(3, 8, activation, in_features=FEATURES, out_features=CLASSES)


@dataclasses.dataclass(frozen=True)
class Case:
    """Bad data or loss, the error it must raise, and words its message must contain."""

    data: Any
    error: type[gw.GradWidgetError]
    words: tuple[str, ...]
    loss_fn: Callable[..., torch.Tensor] | None = None
    make: Callable[[], nn.Module] = model


CASES = {
    "wrong input shape": Case((X[:, :4], Y), gw.DataError, ("(8, 4)", "in_features=6", "Reshape")),
    "wrong target dtype": Case((X, Y.float()), gw.DataError, ("floating-point", "y.long()")),
    "empty tensors": Case((X[:0], Y[:0]), gw.DataError, ("empty", "at least one sample")),
    "empty DataLoader": Case(DataLoader([]), gw.DataError, ("no batches", "not empty")),
    "Inf in inputs": Case((INF_X, Y), gw.DataError, ("NaN or Inf", "row 7", "nan_to_num")),
    "non-scalar loss": Case(
        (X, Y),
        gw.TrainingError,
        ("shape (8,)", "reduction='mean'"),
        loss_fn=nn.CrossEntropyLoss(reduction="none"),
    ),
    "loss raises": Case(
        (X, Y),
        gw.TrainingError,
        ("loss function raised", "ValueError", "no class weights", "Check that the loss"),
        loss_fn=broken_loss,
    ),
    "no parameters": Case(
        (X, Y), gw.TrainingError, ("no trainable parameters", "nn.ModuleList"), make=nn.Flatten
    ),
    "DataLoader raises midway": Case(
        DataLoader(CorruptRecord(), batch_size=8),
        gw.DataError,
        ("corrupt record 30", "batch 4", "Dataset"),
    ),
}


def headless_message(case: Case) -> str:
    with pytest.raises(case.error) as raised:
        gw.train(case.make(), case.data, steps=STEPS, batch_size=8, loss_fn=case.loss_fn)
    return str(raised.value)


@pytest.mark.parametrize("name", CASES)
def test_bad_data_or_loss_names_problem_and_fix_headless_and_in_the_panel(
    name: str, panels: Callable[..., gw.GradPanel]
) -> None:
    case = CASES[name]
    message = headless_message(case)
    for word in case.words:
        assert word in message
    panel = panels(case.make(), case.data, steps=STEPS, batch_size=8, loss_fn=case.loss_fn)
    panel.train_button.click()
    assert panel.wait(timeout=30)
    run = panel.runs[-1].run
    assert run.state is gw.RunState.FAILED and isinstance(run.error, case.error)
    assert panel.status.text == message  # the same sentence as the exception
    assert panel.status.errors.layout.display == "block"
    assert message in "".join(o["text"] for o in panel.status.errors.outputs)
    assert not panel.train_button.disabled  # usable for the next run


@pytest.mark.parametrize("name", ["wrong target dtype", "non-scalar loss", "Inf in inputs"])
def test_the_panel_trains_once_the_settings_are_corrected(
    name: str, panels: Callable[..., gw.GradPanel]
) -> None:
    case = CASES[name]
    panel = panels(case.make(), case.data, steps=STEPS, batch_size=8, loss_fn=case.loss_fn)
    panel.train()
    panel.wait(timeout=30)
    panel.data, panel.config = (X, Y), dataclasses.replace(panel.config, loss_fn=None)
    panel.train_button.click()
    assert panel.wait(timeout=30)
    assert [r.run.state for r in panel.runs] == [gw.RunState.FAILED, gw.RunState.FINISHED]
    assert panel.status.text.startswith("Finished")
    assert panel.live.dashboard is not None and panel.live.dashboard.grad.lines.x[-1] == STEPS - 1


def test_a_diverging_run_ends_cleanly_keeps_its_history_and_is_diagnosed(
    panels: Callable[..., gw.GradPanel],
) -> None:
    panel = panels(model("relu"), (X, Y), steps=200, batch_size=8, lr=1e6)
    run = panel.train()
    assert panel.wait(timeout=30)
    assert run.state is gw.RunState.DIVERGED and 0 < run.step < 200
    assert panel.status.text == run.message and "learning rate" in run.message
    history = panel.runs[0].history
    loss = history.loss
    assert len(loss) == run.step and not np.isfinite(loss[-1]) and np.isfinite(loss[0])
    findings = gw.diagnose(history)
    assert findings[0].kind == "non_finite" and findings[0].severity is gw.Severity.CRITICAL
    assert findings[0].title in panel.live.diagnosis.value
    assert panel.live.dashboard.grad.lines.x[-1] == run.step - 1  # drawn up to the last step
    headless = gw.train(model("relu"), (X, Y), steps=200, batch_size=8, lr=1e6)
    assert headless.state is gw.RunState.DIVERGED and headless.message == run.message
    assert panel.retrain(["batchnorm"]) is not None and panel.wait(timeout=30)
    assert panel.runs[1].run.state.ended
