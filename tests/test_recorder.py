"""Recorder against torch itself: gradient norms, activation statistics, update ratios, hooks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from gradwidget.errors import GradWidgetError
from gradwidget.record.recorder import Recorder

torch.manual_seed(0)


def _hook_state(model: nn.Module) -> list[tuple[int, ...]]:
    """Every hook dict of every module, by size: what must be unchanged after close()."""
    dicts = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return [tuple(len(getattr(m, d)) for d in dicts) for m in model.modules()]


def _oracle_norms(model: nn.Module, layers: tuple[str, ...]) -> np.ndarray:
    """Per-layer L2 norm of the layer's own parameter gradients, straight from torch."""
    modules = dict(model.named_modules())
    norms = []
    for name in layers:
        grads = [p.grad.flatten() for p in modules[name].parameters(recurse=False)]
        norms.append(torch.linalg.vector_norm(torch.cat(grads).double()).item())
    return np.array(norms)


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


class _Lstm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(5, 12, num_layers=2, batch_first=True)
        self.head = nn.Linear(12, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


def _transformer() -> nn.Module:
    layer = nn.TransformerEncoderLayer(d_model=16, nhead=2, dim_feedforward=32, batch_first=True)
    return nn.Sequential(nn.TransformerEncoder(layer, num_layers=2), nn.Flatten(), nn.Linear(64, 3))


MODELS = {
    "mlp": (lambda: nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3)), (32, 6)),
    "nested": (
        lambda: nn.Sequential(nn.Linear(4, 8), _Block(), _Block(), nn.Linear(8, 3)),
        (32, 4),
    ),
    "cnn": (
        lambda: nn.Sequential(
            nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(144, 3)
        ),
        (16, 1, 8, 8),
    ),
    "lstm": (_Lstm, (8, 7, 5)),
    "transformer": (_transformer, (8, 4, 16)),
}


def _backward(model: nn.Module, shape: tuple[int, ...]) -> torch.Tensor:
    x = torch.randn(*shape)
    y = torch.randint(0, 3, (shape[0],))
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    return loss


@pytest.mark.parametrize("kind", MODELS)
def test_grad_norms_equal_torch(kind: str) -> None:
    build, shape = MODELS[kind]
    model = build()
    with Recorder(model, budget=None) as rec:
        loss = _backward(model, shape)
        rec.capture(loss)
        got = rec.history.grad_norm[-1].astype(np.float64)
        expected = _oracle_norms(model, rec.layers)
        np.testing.assert_allclose(got, expected, rtol=1e-5)
        assert rec.history.loss[-1] == pytest.approx(loss.item(), rel=1e-6)


@pytest.mark.parametrize("kind", MODELS)
def test_close_restores_every_hook_dict(kind: str) -> None:
    build, shape = MODELS[kind]
    model = build()
    before = _hook_state(model)
    rec = Recorder(model, act_every=1)
    assert _hook_state(model) != before  # armed for the sampled forward
    rec.capture(_backward(model, shape))
    rec.close()
    rec.close()  # idempotent
    assert _hook_state(model) == before


def test_hooks_removed_when_the_block_raises() -> None:
    model = MODELS["mlp"][0]()
    before = _hook_state(model)
    with pytest.raises(RuntimeError, match="boom"), Recorder(model):
        raise RuntimeError("boom")
    assert _hook_state(model) == before


def test_no_hooks_between_sampled_steps() -> None:
    model, shape = MODELS["mlp"][0](), MODELS["mlp"][1]
    before = _hook_state(model)
    with Recorder(model, act_every=4, budget=None) as rec:  # the budget may space samples
        for step in range(8):
            rec.capture(_backward(model, shape))
            armed = _hook_state(model) != before
            assert armed == ((step + 1) % 4 == 0)


def test_layers_follow_execution_order_not_registration() -> None:
    class Backwards(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out = nn.Linear(8, 2)
            self.inp = nn.Linear(4, 8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.out(self.inp(x))

    model = Backwards()
    rec = Recorder(model)
    assert rec.layers == ("out", "inp")  # before any forward: registration order
    model(torch.randn(2, 4)).sum().backward()
    rec.capture()
    assert rec.layers == ("inp", "out")
    rec.close()


def test_frozen_unused_and_tied_parameters() -> None:
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.frozen = nn.Linear(4, 4)
            self.unused = nn.Linear(4, 4)
            self.enc = nn.Linear(4, 4, bias=False)
            self.dec = nn.Linear(4, 4)
            self.dec.weight = self.enc.weight  # tied
            self.frozen.requires_grad_(False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.dec(torch.relu(self.enc(self.frozen(x))))

    model = Odd()
    with Recorder(model, budget=None) as rec:
        model(torch.randn(8, 4)).pow(2).mean().backward()
        rec.capture()
        norms = dict(zip(rec.layers, rec.history.grad_norm[-1], strict=True))
        nonfinite = rec.history.nonfinite[-1]
    assert math.isnan(norms["frozen"]) and math.isnan(norms["unused"])
    # the shared weight is counted once, in the first module that owns it
    assert norms["enc"] == pytest.approx(model.enc.weight.grad.norm().item(), rel=1e-5)
    assert norms["dec"] == pytest.approx(model.dec.bias.grad.norm().item(), rel=1e-5)
    assert not nonfinite.any()  # "no gradient" is not "bad gradient"


def test_nonfinite_gradients_are_counted() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 1))
    with Recorder(model, budget=None) as rec:
        model(torch.randn(4, 3)).sum().backward()
        model[0].weight.grad[0, :2] = float("nan")
        model[0].bias.grad[1] = float("inf")
        rec.capture()
        assert rec.history.nonfinite[-1].tolist() == [3.0, 0.0]


def test_activation_statistics_match_torch() -> None:
    model = nn.Sequential(
        nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.Sigmoid(), nn.Linear(32, 2)
    )
    with torch.no_grad():
        model[0].bias[:20] = -100.0  # 20 of 32 units can never fire
        model[2].weight.mul_(30)  # push the sigmoid into saturation
    seen = {}
    for i in (1, 3):
        model[i].register_forward_hook(lambda m, a, out, i=i: seen.__setitem__(i, out.detach()))
    with Recorder(model, act_every=1, budget=None) as rec:
        x = torch.randn(64, 10)
        model(x).sum().backward()
        rec.capture()
        h = rec.history
    relu, sig = seen[1], seen[3]
    std, mean = torch.std_mean(relu, unbiased=False)
    assert h.act_mean[-1][0] == pytest.approx(mean.item(), rel=1e-4)
    assert h.act_std[-1][0] == pytest.approx(std.item(), rel=1e-4)
    assert h.dead_frac[-1][0] == pytest.approx((relu.amax(0) == 0).float().mean().item())
    assert h.dead_frac[-1][0] >= 20 / 32
    saturated = ((sig < 0.03) | (sig > 0.97)).float().mean().item()
    assert h.saturated_frac[-1][1] == pytest.approx(saturated, abs=1e-6)
    assert saturated > 0.3
    assert math.isnan(h.saturated_frac[-1][0])  # saturation means nothing for ReLU
    assert math.isnan(h.saturated_frac[-1][2])  # output layer: no activation after it


def test_conv_units_are_channels() -> None:
    model = nn.Sequential(nn.Conv2d(1, 6, 3), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 36, 2))
    with torch.no_grad():
        model[0].bias[:3] = -1e3
    with Recorder(model, act_every=1) as rec:
        model(torch.randn(4, 1, 8, 8)).sum().backward()
        rec.capture()
        assert rec.history.dead_frac[-1][0] == pytest.approx(0.5)


def test_update_ratio_matches_the_optimizer_step() -> None:
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with Recorder(model, act_every=2, budget=None) as rec:
        before = [p.detach().clone() for p in model.parameters()]
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(16, 5)).pow(2).mean().backward()
            rec.capture()
            opt.step()
            if rec.step == 1:
                after = [p.detach().clone() for p in model.parameters()]
        h = rec.history
    assert h.series("update_ratio").steps.tolist() == [0]
    for i, (b, a) in enumerate(((before[:2], after[:2]), (before[2:], after[2:]))):
        moved = torch.cat([(x - y).flatten() for x, y in zip(a, b, strict=True)]).norm()
        weight = torch.cat([y.flatten() for y in b]).norm()
        assert h.update_ratio[0][i] == pytest.approx((moved / weight).item(), rel=1e-4)
        assert h.weight_norm[0][i] == pytest.approx(weight.item(), rel=1e-5)


def test_adaptive_sampling_holds_the_budget_when_captures_are_costly() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    unlimited = Recorder(model, budget=None)
    # an absurdly small budget cannot be met by capturing every step
    tight = Recorder(model, budget=1e-9)
    for _ in range(400):
        model.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        unlimited.capture()
        tight.capture()
    assert unlimited.grad_every == 1 and len(unlimited.history) == 400
    assert (unlimited.act_interval, tight.act_every) == (10, 10)
    # captures until the first decision (step 8) measure the costs; the ticks alone fill this
    # budget, so both intervals then go to their widest at once, without a second sample
    steps, acts = tight.history.steps, tight.history.series("act_mean").steps
    assert steps[:5].tolist() == [0, 2, 4, 6, 8] and steps[5] == 8 + tight.grad_every
    assert acts.tolist() == [0]
    assert tight.grad_every == 64 and tight.act_interval == 10 * 64
    unlimited.close()
    tight.close()


def test_model_without_parameters_is_refused_clearly() -> None:
    with pytest.raises(GradWidgetError, match="no parameters"):
        Recorder(nn.Sequential(nn.ReLU()))


def test_capture_after_close_is_a_clear_error() -> None:
    model = nn.Linear(2, 1)
    rec = Recorder(model)
    rec.close()
    with pytest.raises(GradWidgetError, match="closed"):
        rec.capture()


def test_mixed_precision_parameters() -> None:
    model = nn.Sequential(nn.Linear(4, 4).double(), nn.Linear(4, 2).to(torch.bfloat16))
    with Recorder(model, budget=None) as rec:
        x = torch.randn(3, 4, dtype=torch.float64)
        model[1](model[0](x).to(torch.bfloat16)).float().sum().backward()
        rec.capture()
        got = rec.history.grad_norm[-1]
    expected = _oracle_norms(model, rec.layers)
    np.testing.assert_allclose(got, expected, rtol=1e-2)  # bfloat16 carries 3 digits


def test_without_activation_sampling_no_hook_outlives_the_first_step() -> None:
    model, shape = MODELS["mlp"][0](), MODELS["mlp"][1]
    before = _hook_state(model)
    with Recorder(model, act_every=None) as rec:
        for _ in range(3):
            rec.capture(_backward(model, shape))
            assert _hook_state(model) == before
        assert "dead_frac" not in rec.history.metrics


def test_force_captures_a_step_the_interval_would_skip() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    with Recorder(model, budget=None) as rec:
        rec.grad_every = 1000  # as if the time budget had thinned captures
        for step in range(5):
            model.zero_grad()
            model(torch.randn(2, 4)).sum().backward()
            rec.capture(float(step), force=step == 3)
        assert rec.history.steps.tolist() == [0, 3]
        assert rec.history.loss.tolist() == [0.0, 3.0]


def test_gradient_captures_are_never_further_apart_than_the_interval() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 1))
    with Recorder(model, budget=None) as rec:
        intervals = [5, 7, 3, 8, 2, 6] * 5
        for step, every in enumerate(np.repeat(intervals, 4)):
            rec.grad_every = int(every)  # as the time budget would move it
            model.zero_grad()
            model(torch.randn(2, 4)).sum().backward()
            rec.capture(float(step))
        steps = rec.history.steps
    assert steps[0] == 0
    assert np.diff(steps).max() <= max(intervals)


def test_reduce_squares_sums_squared_norms_once_per_step() -> None:
    """Stage (b): what FSDP2 plugs an all_reduce into; here two 'ranks' with equal shards."""
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    calls = []

    def two_ranks(flat: torch.Tensor) -> torch.Tensor:
        calls.append(flat.numel())
        return flat * 2  # as if another rank held an identical shard

    with Recorder(model, act_every=1, budget=None) as rec:
        rec.reduce_squares = two_ranks
        for _ in range(2):
            opt.zero_grad()
            model(torch.randn(16, 5)).pow(2).mean().backward()
            rec.capture()
            expected = _oracle_norms(model, rec.layers) * math.sqrt(2)
            np.testing.assert_allclose(rec.history.grad_norm[-1], expected, rtol=1e-5)
            opt.step()
    params = len(list(model.parameters()))
    # step 0: the gradients; step 1: the gradients, and the weights and update of step 0
    assert calls == [params, 3 * params]


def test_steps_captured_without_a_loss_record_none_and_a_nan_loss_still_counts() -> None:
    from gradwidget.diagnose.rules import diagnose

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    x = torch.randn(16, 4)
    with Recorder(model, budget=None) as rec:  # every step captured
        for factor in [1.0] * 30 + [math.nan]:
            model.zero_grad()
            loss = model(x).square().mean() * factor
            loss.backward()
            rec.capture(None if factor == 1.0 else loss)  # own loops may leave the loss out
            if rec.step == 30:
                quiet = rec.history
    assert len(quiet.grad_norm) == 30 and len(quiet.series("loss")) == 0
    assert "non_finite" not in [f.kind for f in diagnose(quiet)]
    history = rec.history
    assert history.series("loss").steps.tolist() == [30]
    assert math.isnan(float(history.series("loss").last[0, 0]))
    assert "non_finite" in [f.kind for f in diagnose(history)]  # a real NaN loss still is one
