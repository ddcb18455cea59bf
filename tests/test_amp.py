"""AMP: norms reported unscaled, skipped steps recorded, and no non_finite finding for them.

Run on CPU with ``torch.amp.GradScaler("cpu")`` and ``torch.autocast("cpu", dtype=bfloat16)``;
torch's own unscaling (``scaler.unscale_``) is the oracle.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import gradwidget as gw
from gradwidget.errors import GradWidgetError

SCALE = 2.0**16


def _setup(seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, torch.amp.GradScaler]:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    return model, opt, torch.amp.GradScaler("cpu", init_scale=SCALE)


def _scaled_backward(model: nn.Module, scaler: torch.amp.GradScaler) -> torch.Tensor:
    x, y = torch.randn(32, 6), torch.randint(0, 3, (32,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = nn.functional.cross_entropy(model(x), y)
    scaler.scale(loss).backward()
    return loss


def _torch_norms(model: nn.Module, layers: tuple[str, ...]) -> np.ndarray:
    """Per-layer norms of the gradients as they are now (after torch's own unscale_)."""
    modules = dict(model.named_modules())
    return np.array(
        [
            torch.cat([p.grad.flatten() for p in modules[n].parameters(recurse=False)])
            .norm()
            .item()
            for n in layers
        ]
    )


@pytest.mark.parametrize("unscaled_first", [False, True])
def test_norms_are_unscaled_whether_or_not_the_user_unscaled(unscaled_first: bool) -> None:
    model, opt, scaler = _setup()
    with gw.Recorder(model, budget=None) as rec:
        for _ in range(3):
            opt.zero_grad()
            loss = _scaled_backward(model, scaler)
            if unscaled_first:
                scaler.unscale_(opt)
            rec.capture(loss, scaler=scaler)
            if not unscaled_first:
                scaler.unscale_(opt)  # now torch's own unscaled gradients are the oracle
            expected = _torch_norms(model, rec.layers)
            got = rec.history.grad_norm[-1].astype(np.float64)
            np.testing.assert_allclose(got, expected, rtol=1e-4)
            scaler.step(opt)
            scaler.update()
    # and they are not the scaled ones: the recorded norms are about SCALE times smaller
    assert got.max() < 1e3


def _train(steps: int, bad: set[int], init_scale: float = SCALE) -> tuple[gw.History, list[float]]:
    """AMP training where the steps in ``bad`` get an Inf gradient (the scaler skips them)."""
    model, opt, _ = _setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
    applied = []
    with gw.Recorder(model) as rec:
        for step in range(steps):
            opt.zero_grad()
            loss = _scaled_backward(model, scaler)
            if step in bad:  # as a float16 overflow in backward: Inf reaches every gradient
                for p in model.parameters():
                    p.grad[0] = math.inf
            rec.capture(loss, scaler=scaler)
            before = model[0].weight.detach().clone()
            scaler.step(opt)
            scaler.update()
            applied.append(not torch.equal(before, model[0].weight))
        return rec.history, applied


def test_skipped_steps_are_recorded_and_are_no_finding() -> None:
    bad = {30, 31, 32, 90}
    history, applied = _train(120, bad)
    assert {s for s, ok in enumerate(applied) if not ok} == bad  # torch skipped exactly these
    skipped = history.series("amp_skipped")
    assert skipped.steps.tolist() == sorted(bad)
    assert skipped.last[:, 0].tolist() == [1, 2, 3, 1]  # consecutive skips so far
    # each skipped step was captured, even between gradient samples: the sentinel saw the Inf
    nonfinite = history.series("nonfinite")
    assert set(nonfinite.steps[nonfinite.hi.max(axis=1) > 0].tolist()) == bad
    assert history.series("amp_scale").last[-1, 0] == SCALE / 2**4
    assert "non_finite" not in {f.kind for f in gw.diagnose(history)}


def test_persistent_skips_are_a_finding() -> None:
    history, _ = _train(60, set(range(20, 20 + 12)))
    finding = next(f for f in gw.diagnose(history) if f.kind == "non_finite")
    assert finding.evidence["first_step"] == 20


def test_a_collapsed_scale_is_a_finding() -> None:
    history, _ = _train(60, {20, 40}, init_scale=1.0)  # two halvings: 0.25, below 1
    assert "non_finite" in {f.kind for f in gw.diagnose(history)}


def test_a_disabled_scaler_changes_nothing() -> None:
    model, _, _ = _setup()
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    with gw.Recorder(model, budget=None) as rec:
        loss = _scaled_backward(model, scaler)
        rec.capture(loss, scaler=scaler)
        np.testing.assert_allclose(
            rec.history.grad_norm[-1], _torch_norms(model, rec.layers), rtol=1e-5
        )
        assert "amp_scale" not in rec.history.metrics


def test_something_else_as_scaler_is_a_clear_error() -> None:
    model = nn.Linear(2, 1)
    with gw.Recorder(model) as rec, pytest.raises(GradWidgetError, match="GradScaler"):
        rec.capture(1.0, scaler=2.0**16)
