"""Hardening, faults: clicks at the wrong time, interrupts, shared models, and no mutation.

Widgets run on ipywidgets' dummy comm: ``button.click()`` calls the handlers, as a click in
the browser would once it reaches the kernel.
"""

from __future__ import annotations

import os
import signal
import threading

import pytest
import torch
from torch import nn

import gradwidget as gw

torch.set_num_threads(1)

FEATURES, CLASSES = 6, 3
G = torch.Generator().manual_seed(0)
DATA = (torch.randn(64, FEATURES, generator=G), torch.randint(0, CLASSES, (64,), generator=G))
LONG = 100_000  # steps that will not finish during a test: the run must be stopped
HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def mlp(activation: str = "sigmoid") -> nn.Sequential:
    torch.manual_seed(0)
    return gw.models.deep_mlp(3, 8, activation, in_features=FEATURES, out_features=CLASSES)


def hooks(model: nn.Module) -> int:
    return sum(len(getattr(m, d)) for m in model.modules() for d in HOOK_DICTS)


def fingerprint(model: nn.Module) -> tuple[str, dict[str, torch.Tensor], list[bool], int]:
    """Structure, weights, trainable flags and hooks: everything a remedy could change."""
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return repr(model), weights, [p.requires_grad for p in model.parameters()], hooks(model)


def assert_unchanged(model: nn.Module, before: tuple) -> None:
    text, weights, flags, n_hooks = fingerprint(model)
    assert (text, flags, n_hooks) == (before[0], before[2], before[3])
    assert all(torch.equal(weights[k], v) for k, v in before[1].items())


def test_train_clicked_twice_starts_one_run(panels) -> None:
    panel = panels(mlp(), DATA, steps=LONG, batch_size=8)
    panel.train_button.click()
    panel.train_button.click()  # a disabled button's click still reaches the handler here
    assert len(panel.runs) == 1 and "still running" in panel.status.text
    panel.stop_button.click()
    assert panel.wait(timeout=5) and panel.runs[0].run.state is gw.RunState.STOPPED


def test_retrain_clicked_while_a_run_goes_is_refused_clearly(panels) -> None:
    panel = panels(mlp(), DATA, steps=LONG, batch_size=8)
    panel.train_button.click()
    panel.fixes.buttons["relu"].click()
    panel.fixes.retrain_button.click()
    assert "still running" in panel.status.text and "Stop" in panel.status.text
    assert [r.name for r in panel.runs] == ["baseline"]
    panel.stop_button.click()
    assert panel.wait(timeout=5)
    panel.fixes.retrain_button.click()  # the same selection now starts
    assert [r.name for r in panel.runs] == ["baseline", "ReLU"]


def test_a_remedy_that_does_not_apply_clicked_anyway_explains_and_starts_nothing(panels) -> None:
    model = nn.Sequential(nn.Linear(FEATURES, 8), nn.ReLU(inplace=True), nn.Linear(8, CLASSES))
    panel = panels(model, DATA, steps=5, batch_size=8)
    with pytest.raises(gw.RemedyNotApplicable) as why:
        gw.remedies.check(model, "relu")
    assert panel.fixes.buttons["relu"].disabled
    panel.fixes.buttons["relu"].click()
    panel.fixes.retrain_button.click()
    assert panel.status.text == str(why.value) and panel.runs == []
    panel.train_button.click()
    assert panel.wait(timeout=30) and panel.runs[0].run.state is gw.RunState.FINISHED


class InterruptedAt(nn.Module):
    """Raises KeyboardInterrupt in its ``at``-th forward call, as Ctrl-C would mid-step."""

    at = 4  # a class attribute: the panel's copies share it

    def __init__(self) -> None:
        super().__init__()
        self.body, self.calls = mlp(), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == InterruptedAt.at:
            raise KeyboardInterrupt
        return self.body(x)


def test_a_keyboard_interrupt_in_a_managed_run_stops_it_and_the_panel_goes_on(panels) -> None:
    panel = panels(InterruptedAt(), DATA, steps=50, batch_size=8)
    run = panel.train()
    assert panel.wait(timeout=30)
    assert run.state is gw.RunState.STOPPED and "KeyboardInterrupt" in panel.status.text
    assert len(panel.runs[0].history) == InterruptedAt.at - 1  # the steps before it are kept
    assert hooks(panel.runs[0].model) == 0 and not panel.train_button.disabled
    InterruptedAt.at = 0  # never again
    assert panel.train() is not None and panel.wait(timeout=30)
    assert panel.runs[1].run.state is gw.RunState.FINISHED


def test_an_interrupt_while_waiting_reaches_the_user_and_stop_still_works(panels) -> None:
    panel = panels(mlp(), DATA, steps=LONG, batch_size=8)
    run = panel.train()
    timer = threading.Timer(0.3, _interrupt_main)
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        panel.wait(timeout=10)
    timer.join()
    assert run.state is gw.RunState.RUNNING  # waiting was interrupted, not the run
    panel.stop_button.click()
    assert panel.wait(timeout=5) and run.state is gw.RunState.STOPPED
    assert hooks(panel.runs[0].model) == 0


def _interrupt_main() -> None:
    os.kill(os.getpid(), signal.SIGINT)  # what Jupyter's "interrupt kernel" sends the kernel


def test_one_model_in_two_managed_panels_both_train_side_by_side(panels) -> None:
    model = mlp()
    before = fingerprint(model)
    first, second = panels(model, DATA, steps=30), panels(model, DATA, steps=30, lr=0.5)
    runs = [first.train(), second.train()]
    assert first.wait(timeout=30) and second.wait(timeout=30)
    assert [r.state for r in runs] == [gw.RunState.FINISHED] * 2
    assert runs[0].model is not runs[1].model
    assert runs[0].loss != runs[1].loss  # each trained its own copy with its own settings
    assert_unchanged(model, before)


def test_remedies_and_comparison_runs_never_touch_the_users_model(panels) -> None:
    model = mlp()
    before = fingerprint(model)
    panel = panels(model, DATA, steps=10, batch_size=8)
    panel.train()
    panel.wait(timeout=30)
    one_of_each_group = ["leaky_relu", "xavier_init", "layernorm", "residual"]
    for names in (["relu"], ["he_init"], ["batchnorm"], one_of_each_group):
        assert panel.retrain(names) is not None and panel.wait(timeout=30)
        panel.remedied_model(names)
        gw.apply_remedies(model, names)
    assert len(panel.comparison()) == 5
    assert_unchanged(model, before)
    assert all(r.model is not model for r in panel.runs)
