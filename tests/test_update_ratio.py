"""Update ratios from a sample of each tensor: error against torch, memory, and measure tiers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import transformers
from torch import nn

from gradwidget.errors import GradWidgetError
from gradwidget.record._layers import UpdateTracker, plan_sample
from gradwidget.record._measure import SERIES
from gradwidget.record._memory import MIN_CAPACITY, UPDATE_FLOOR, UPDATE_SHARE
from gradwidget.record.recorder import Recorder

transformers.logging.set_verbosity_error()

# What the panel draws or diagnoses from: every one must still be recorded at defaults.
PANEL_SERIES = ("train_loss", *(name for names in SERIES.values() for name in names))


def _gpt2(layers: int, width: int, vocab: int) -> nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=layers, n_embd=width, n_head=4, vocab_size=vocab, n_positions=64
    )
    return transformers.GPT2LMHeadModel(config)


def _exact_ratios(
    modules: dict[str, nn.Module], names: tuple[str, ...], before: dict[str, list[torch.Tensor]]
) -> np.ndarray:
    """Per-layer ||Δθ|| / ||θ|| from a full copy: the oracle the sample is judged against."""
    ratios = []
    for name in names:
        params = list(modules[name].parameters(recurse=False))
        pairs = zip(params, before[name], strict=True)
        moved = torch.cat([(p.detach() - b).flatten() for p, b in pairs])
        weight = torch.cat([b.flatten() for b in before[name]])
        ratios.append((moved.double().norm() / weight.double().norm()).item())
    return np.array(ratios)


def _relative_errors(optimizer: str) -> np.ndarray:
    """Relative error of every recorded per-layer update ratio over steps 3 to 5."""
    model, vocab = _gpt2(4, 256, 2000), 2000
    make = {"sgd": lambda p: torch.optim.SGD(p, lr=0.05), "adamw": torch.optim.AdamW}
    opt = make[optimizer](model.parameters())
    modules = dict(model.named_modules())
    exact = {}
    with Recorder(model, act_every=1, budget=None) as rec:
        for step in range(7):
            x = torch.randint(0, vocab, (4, 32), generator=torch.Generator().manual_seed(step))
            loss = model(x, labels=x).loss
            opt.zero_grad()
            loss.backward()
            copies = {n: [p.detach().clone() for p in modules[n].parameters(recurse=False)]
                      for n in rec.layers}  # fmt: skip
            rec.capture(loss)
            opt.step()
            if 3 <= step < 6:
                exact[step] = _exact_ratios(modules, rec.layers, copies)
        series = rec.history.series("update_ratio")
    pairs = zip(series.steps, series.last, strict=True)
    rows = [row / exact[s] - 1 for s, row in pairs if s in exact]
    assert len(rows) == 3
    return np.abs(np.concatenate(rows))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_sampled_update_ratio_is_close_to_the_exact_one(optimizer: str) -> None:
    errors = _relative_errors(optimizer)
    # Measured (docs/performance.md), a sample of a quarter of 1 %: median 1.9-3.3 %, p90
    # 7-11 %, max 9-27 %. A sample read without the exact weight norm's scale is off by 10x.
    assert np.median(errors) < 0.05
    assert np.quantile(errors, 0.9) < 0.2
    assert errors.max() < 0.5


def test_small_tensors_are_kept_whole_and_exact() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    tracker = UpdateTracker()
    params = list(model.parameters())
    model(torch.randn(4, 8)).sum().backward()
    before = [p.detach().clone() for p in params]
    tracker.keep(params, torch.device("cpu"))
    opt.step()
    update_sq = tracker.measure(params, torch.device("cpu"))["update_sq"]
    pairs = zip(params, before, strict=True)
    exact = torch.stack([(p.detach() - b).double().norm().square() for p, b in pairs])
    torch.testing.assert_close(update_sq, exact, rtol=1e-6, atol=0)


def test_tracker_holds_its_quarter_of_one_percent_of_a_mid_size_model() -> None:
    model = _gpt2(6, 512, 8000)  # 23M parameters, 92 MB
    params = list(model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    tracker = UpdateTracker()
    tracker.keep(params, torch.device("cpu"))
    assert 0.9 * UPDATE_SHARE * param_bytes <= tracker.nbytes <= UPDATE_SHARE * param_bytes
    plan = plan_sample([p.detach() for p in params])
    assert all(s.count >= min(s.numel, 256) for s in plan)  # the share leaves room for 256 each
    assert all(s.start + (s.count - 1) * s.stride < s.numel for s in plan)


def test_recording_a_mid_size_model_holds_at_most_one_percent_of_it() -> None:
    """Everything sampled at every step: the update sample and the filled history together
    stay within 1 % of the parameter bytes torch reports, and every panel series is there."""
    model = _gpt2(6, 512, 8000)
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randint(8000, (1, 16))
    with Recorder(model, act_every=1, budget=None) as rec:
        for _ in range(3):
            opt.zero_grad()
            loss = model(x, labels=x).loss
            loss.backward()
            rec.capture(loss)
            opt.step()
        rec.live.append("accuracy", 3, 0.5)  # what a managed run adds beside the recorder
        rec.live.append("test_accuracy", 3, 0.5)
        held = rec._updates.nbytes + rec.live.nbytes()
        assert rec._updates.nbytes > 0
        history = rec.history
    assert held <= 0.01 * param_bytes
    assert history.capacity >= MIN_CAPACITY
    for name in PANEL_SERIES:
        assert len(history.series(name)) > 0, name


def test_a_bfloat16_model_stays_within_its_share() -> None:
    model = _gpt2(6, 512, 8000).to(torch.bfloat16)  # 46 MB: above the sample's floor
    params = list(model.parameters())
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    tracker = UpdateTracker()
    tracker.keep(params, torch.device("cpu"))
    assert UPDATE_FLOOR < tracker.nbytes <= UPDATE_SHARE * param_bytes


def test_channels_last_weights_are_sampled_without_a_copy() -> None:
    conv = nn.Conv2d(64, 64, 3).to(memory_format=torch.channels_last)
    (view,) = [s.of(conv.weight.detach()) for s in plan_sample([conv.weight.detach()])]
    assert view.untyped_storage().data_ptr() == conv.weight.untyped_storage().data_ptr()


def _train(rec: Recorder, model: nn.Module, steps: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(steps):
        loss = model(torch.randn(8, 6)).square().mean()
        opt.zero_grad()
        loss.backward()
        rec.capture(loss)
        opt.step()


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 12), nn.Sigmoid(),
                         nn.Linear(12, 1))  # fmt: skip


def test_defaults_record_every_series_the_panel_shows() -> None:
    model = _mlp()
    with Recorder(model, act_every=2) as rec:
        _train(rec, model, 6)
    history = rec.history
    for name in PANEL_SERIES:
        assert len(history.series(name)) > 0, name


@pytest.mark.parametrize("measure", ["gradients", "activations", "updates"])
def test_a_tier_left_out_computes_nothing_for_its_series(measure: str) -> None:
    model = _mlp()
    kept = {"gradients", "activations", "updates"} - {measure}
    with Recorder(model, act_every=2, budget=None, measure=kept) as rec:
        _train(rec, model, 6)
        assert not rec._probe.armed or "activations" in kept
        assert rec._updates.nbytes == 0 or "updates" in kept
    history = rec.history
    assert len(history.series("train_loss")) == 6
    for tier, names in SERIES.items():
        for name in names:
            assert (len(history.series(name)) > 0) == (tier in kept), name


def test_updates_only_attaches_no_hook_after_the_first_step() -> None:
    model = _mlp()
    with Recorder(model, act_every=1, measure="updates") as rec:
        _train(rec, model, 1)
        hooks = sum(len(m._forward_hooks) for m in model.modules())
        _train(rec, model, 3)
    assert hooks == 0
    assert len(rec.history.series("update_ratio")) == 3


def test_an_unknown_measure_is_a_clear_error() -> None:
    with pytest.raises(GradWidgetError, match="'weights'"):
        Recorder(_mlp(), measure=("gradients", "weights"))


def test_an_empty_parameter_is_sampled_as_nothing() -> None:
    empty, weight = nn.Parameter(torch.empty(0, 4)), nn.Parameter(torch.randn(3, 4))
    tracker = UpdateTracker()
    tracker.keep([empty, weight], torch.device("cpu"))
    with torch.no_grad():
        weight.add_(1.0)
    update_sq = tracker.measure([empty, weight], torch.device("cpu"))["update_sq"]
    assert update_sq[0] == 0 and update_sq[1] == pytest.approx(12.0)
