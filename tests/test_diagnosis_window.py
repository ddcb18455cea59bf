"""The diagnosis judges the end of a run in steps, and a seeded run records the same anywhere.

Issue 18: under the time budget a tiny model's captures were the dense first 40 steps plus one
every 64, so "the last 40 recorded points" were mostly the first steps of the run, and a
healthy net was diagnosed "Loss plateau". Real trainings here, torch as the trainer; the
healthy nets reach over 90 % test accuracy, so any finding on them is a false one.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import gradwidget as gw
from gradwidget.diagnose.rules import Thresholds, diagnose
from gradwidget.diagnose.windows import recent
from gradwidget.history import History
from gradwidget.record._budget import Schedule, StepBudget, StepKind

T = Thresholds()


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> gw.datasets.Dataset:
    return gw.datasets.digits()


def relu_mlp(depth: int, width: int = 64, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return gw.models.deep_mlp(depth, width, "relu")


def own_loop(model: torch.nn.Module, data, steps: int, rec: gw.Recorder, sparse_after=None):
    """SGD lr 0.1, batches of 64 drawn with seed 0, captured the way a user's loop does;
    ``sparse_after``: from that step on, gradients every 64 steps (the budget's thinnest)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    order = torch.Generator().manual_seed(0)
    for step in range(steps):
        if step == sparse_after:
            rec.grad_every = 64
        idx = torch.randint(0, len(data.x_train), (64,), generator=order)
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        opt.zero_grad()
        loss.backward()
        rec.capture(loss)
        opt.step()
    rec.close()
    return rec.history


def accuracy(model: torch.nn.Module, data) -> float:
    with torch.no_grad():
        return float((model(data.x_test).argmax(1) == data.y_test).float().mean())


# -- the issue's false plateau -------------------------------------------------------------------


def test_a_healthy_net_sampled_densely_first_then_sparsely_has_no_plateau(digits) -> None:
    # The issue's pattern: 41 dense captures, then one every 64 steps. Judged by its last 40
    # recorded points this run "stalled at 98.6 % of its starting loss"; its final loss is 0.07.
    model = relu_mlp(4, width=32, seed=1)
    history = own_loop(model, digits, 400, gw.Recorder(model, budget=None), sparse_after=40)
    assert len(history) < 50 and (np.diff(history.steps)[-5:] == 64).all()  # thinned
    assert accuracy(model, digits) > 0.9 and history.train_loss[-20:].mean() < 0.1
    assert diagnose(history) == []


def test_a_sparse_series_is_judged_on_its_late_points_only() -> None:
    # Vanishing gradients in steps 0-39, healthy ones every 64 steps after: healthy now.
    history = History(("in", "out"))
    for step in range(40):
        history.append("grad_norm", step, [1e-8, 1.0])
    for step in range(104, 400, 64):
        history.append("grad_norm", step, [0.5, 1.0])
    assert diagnose(history) == []
    # A series that stopped halfway through the run is not judged at all.
    for step in range(400, 1000):
        history.append("train_loss", step, 0.1)
    assert recent(history.steps, 999, T) == slice(len(history.steps), len(history.steps))


# -- healthy nets, every way of recording --------------------------------------------------------


@pytest.mark.parametrize("steps", [400, 600, 1000])
def test_healthy_managed_runs_have_no_finding(digits, steps: int) -> None:
    run = gw.train(relu_mlp(4), digits, steps=steps)
    assert run.test_accuracy > 0.9
    assert diagnose(run.history) == []


@pytest.mark.parametrize("steps", [400, 600, 1000])
def test_healthy_own_loops_under_the_time_budget_have_no_finding(digits, steps: int) -> None:
    model = relu_mlp(4)
    history = own_loop(model, digits, steps, gw.Recorder(model))  # default: the time budget
    assert accuracy(model, digits) > 0.9
    assert diagnose(history) == []


def test_a_followed_log_of_a_healthy_run_has_no_finding(digits, tmp_path: Path) -> None:
    model = relu_mlp(4)
    own_loop(model, digits, 600, gw.Recorder(model, log_dir=tmp_path))
    history = gw.open_log(tmp_path)
    assert len(history.series("train_loss")) == 600
    assert diagnose(history) == []


# -- the problems AUTOTRAINER names --------------------------------------------------------------


def test_the_issues_oscillating_net_is_named_with_its_evidence(digits) -> None:
    # 3-layer ReLU MLP at SGD lr 1.5: the loss falls, then swings back up; most of the hidden
    # layer's units die for good.
    run = gw.train(relu_mlp(3, seed=2), digits, steps=400, lr=1.5)
    found = {f.kind: f for f in diagnose(run.history)}
    assert set(found) == {"oscillating", "dead_units"}
    swinging = found["oscillating"]
    assert max(swinging.evidence["swing"], swinging.evidence["rebound"]) >= T.oscillation
    assert swinging.evidence["loss"] > 0.5  # the healthy nets end below 0.1
    assert swinging.remedies[:2] == ("lower_lr", "adam")
    assert found["dead_units"].evidence["fraction"] >= T.dead_fraction
    assert all(np.isfinite(list(f.evidence.values())).all() for f in found.values())
    # torch: the named layer's ReLU units are silent for every test input.
    (layer,) = found["dead_units"].layers
    hidden = run.model[: int(layer) + 2](digits.x_test)
    assert (hidden.amax(0) == 0).float().mean() >= T.dead_fraction


def test_a_net_learning_too_slowly_is_named_slow_convergence(digits) -> None:
    run = gw.train(relu_mlp(3), digits, steps=400, lr=0.005)
    (finding,) = diagnose(run.history)
    assert finding.kind == "slow_convergence" and finding.remedies == ("raise_lr", "adam")
    assert finding.evidence["improvement"] >= T.plateau_improvement  # still falling ...
    assert finding.evidence["steps_needed"] > 400  # ... too slowly to halve in another run
    assert finding.evidence["loss"] > T.plateau_level * finding.evidence["start_loss"]
    assert f"{finding.evidence['loss']:.3g} after 400 steps" in finding.message
    fixed = gw.train(relu_mlp(3), digits, steps=400, lr=0.05)  # raise_lr's 10x
    assert diagnose(fixed.history) == [] and fixed.test_accuracy > run.test_accuracy


# -- the same seed, the same history, however busy the machine -----------------------------------


def _busy_cross_entropy(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on a machine several times slower: 2 ms more CPU time of this thread (the
    clock the time budget reads on CPU; a sleep would not count)."""
    end = time.thread_time() + 0.002
    while time.thread_time() < end:
        pass
    return F.cross_entropy(output, target)


def _recorded(history: History) -> dict[str, tuple]:
    return {
        name: (s.steps.tolist(), s.last.tobytes())
        for name in history.metrics
        for s in [history.series(name)]
    }


def test_a_seeded_run_records_the_same_history_on_a_slow_machine(digits) -> None:
    fast = gw.train(relu_mlp(3, seed=2), digits, steps=300, lr=1.5)
    slow = gw.train(relu_mlp(3, seed=2), digits, steps=300, lr=1.5, loss_fn=_busy_cross_entropy)
    assert slow.wall_time > 1.5 * fast.wall_time  # the slowing really happened
    assert _recorded(slow.history) == _recorded(fast.history)
    assert diagnose(slow.history) == diagnose(fast.history) != []


@pytest.mark.parametrize("steps", [400, 1000, None])
def test_a_step_budget_decides_by_step_alone(steps: int | None) -> None:
    def captured(clock_scale: float) -> tuple[list[int], list[int]]:
        schedule = Schedule(StepBudget(steps), act_every=10)
        grads, acts = [], []
        for step in range(steps or 3000):
            if schedule.grads_due(step, force=False):
                grads.append(step)
            if schedule.acts_due(step):
                schedule.sampled(step)
                acts.append(step)
            t = step * clock_scale  # however long the steps took, nothing may change
            schedule.observe(step, t, t + clock_scale / 2, StepKind.of(True, False, False))
        return grads, acts

    (grads, acts), slowed = captured(1e-3), captured(5.0)
    assert (grads, acts) == slowed
    assert grads[:10] == list(range(10)) and acts[:3] == list(range(0, 30, 10))
    n = steps or 3000
    late = [s for s in grads if s >= 0.9 * n]
    assert len(late) >= 2 * T.min_samples - 1  # the diagnosis's window (the last tenth) is filled
    # The unit rules' window grows back to the last half of the run at most: enough samples there.
    assert len([s for s in acts if s >= n / 2]) > T.min_samples
    # Known length: about 50 captures, and 3 per doubling of the run while the interval
    # grows towards the plan's; unknown: about 50 per doubling of the run.
    assert len(grads) <= (10 + 50 + 3 * np.log2(n) if steps else 50 * (np.log2(n / 50) + 2))


def test_a_long_planned_run_keeps_its_charts_moving() -> None:
    # 200,000 planned steps: 50 points alone would put 4,000 steps between captures from
    # step 10 on, minutes of a chart standing still on a model that takes 30 ms a step.
    schedule, grads, acts = Schedule(StepBudget(200_000), act_every=10), [], []
    for step in range(20_000):
        if schedule.grads_due(step, force=False):
            grads.append(step)
        if schedule.acts_due(step):
            schedule.sampled(step)
            acts.append(step)
    gaps = np.diff(grads)[10:]  # after the head
    assert (gaps <= np.array(grads[10:-1]) / 2).all()  # a third of the run so far, at most
    assert len(grads) < 60 and 10 <= len(acts) <= 15  # and not every step: 3 per doubling
    assert all(any(2**k <= a < 2 ** (k + 1) for a in acts) for k in range(5, 14))  # one a doubling
