"""Training remedies (clip_grad, lower_lr) and the one registry every remedy lives in."""

from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradwidget as gw
from gradwidget import remedies
from gradwidget.diagnose import findings
from gradwidget.remedies import REGISTRY, Group, Target
from gradwidget.train.steps import Stepper
from gradwidget.train.summary import summarize

torch.set_num_threads(1)


def net() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def batch() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    return torch.randn(32, 6, generator=generator) * 5, torch.randint(
        0, 3, (32,), generator=generator
    )


def no_capture(*_: object, **__: object) -> None:
    return None


# -- clip_grad -----------------------------------------------------------------------------------


def test_clipping_shows_in_the_weights_update_exactly_as_torchs() -> None:
    x, y = batch()
    stepped = net()
    stepper = Stepper(stepped, lambda p: torch.optim.SGD(p, lr=0.5), None, clip_grad=0.1)
    stepper.step(x, y, no_capture, measure_accuracy=False)
    manual, unclipped = net(), net()
    norms = []
    for model in (manual, unclipped):  # the oracle: torch's own step, clipped and not
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        F.cross_entropy(model(x), y).backward()
        if model is manual:
            norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), 0.1).item())
        optimizer.step()
    assert norms[0] > 0.1  # the case under test: the gradient was clipped
    for a, b, c in zip(
        stepped.parameters(), manual.parameters(), unclipped.parameters(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        assert not torch.allclose(a, c)
    start = net()
    moved = torch.cat(
        [(a - s).flatten() for a, s in zip(stepped.parameters(), start.parameters(), strict=True)]
    )
    assert moved.norm().item() == pytest.approx(0.5 * 0.1, rel=1e-4)  # lr x the clipped norm


def test_the_recorder_sees_the_gradients_before_clipping() -> None:
    x, y = batch()
    run = gw.train(net(), (x, y), steps=1, batch_size=32, clip_grad=1e-3)
    model = net()
    F.cross_entropy(model(x), y).backward()
    expected = [
        torch.cat([p.grad.flatten() for p in layer.parameters()]).norm().item()
        for layer in (model[0], model[2])
    ]
    assert run.history.grad_norm[0] == pytest.approx(expected, rel=1e-5)


def test_train_config_validates_clip_grad() -> None:
    assert gw.TrainConfig().clip_grad is None
    with pytest.raises(ValueError, match="clip_grad must be positive"):
        gw.TrainConfig(clip_grad=0.0)


# -- settings remedies -----------------------------------------------------------------------------


def test_apply_settings_clips_at_one_and_divides_the_learning_rate_by_ten() -> None:
    base = gw.TrainConfig(lr=50.0, steps=7)
    fixed = remedies.apply_settings(base, ["lower_lr", "clip_grad"])
    assert fixed == dataclasses.replace(base, lr=5.0, clip_grad=1.0)
    assert base.clip_grad is None and base.lr == 50.0  # the input settings are untouched
    assert remedies.check(net(), "lower_lr", base).summary.startswith("learning rate 50 -> 5")
    code = remedies.check(net(), "clip_grad").code
    assert "torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=1.0)" in code


def test_lower_lr_scales_an_optimizer_factory_too() -> None:
    def factory(params: object) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=0.03)

    fixed = remedies.apply_settings(gw.TrainConfig(optimizer=factory), ["lower_lr"])
    optimizer = fixed.optimizer(net().parameters())
    assert isinstance(optimizer, torch.optim.Adam)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.003)
    run = gw.Run(net(), batch(), dataclasses.replace(fixed, steps=2), name="lower")
    run.start().join(30)
    assert summarize(run, ("lower_lr",)).training == "lr x0.1"  # as the comparison shows it
    assert summarize(run, ()).training == ""


def test_raise_lr_multiplies_the_learning_rate_by_ten() -> None:
    base = gw.TrainConfig(lr=0.01)
    assert remedies.apply_settings(base, ["raise_lr"]) == dataclasses.replace(base, lr=0.1)
    assert remedies.check(net(), "raise_lr", base).summary.startswith("learning rate 0.01 -> 0.1")

    def factory(params: object) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=0.02)

    fixed = remedies.apply_settings(gw.TrainConfig(optimizer=factory), ["raise_lr"])
    assert fixed.optimizer(net().parameters()).param_groups[0]["lr"] == pytest.approx(0.2)


def test_adam_switches_to_adam_at_its_standard_rate_and_a_rate_change_scales_it() -> None:
    base = gw.TrainConfig(lr=1.5, steps=3)
    fixed = remedies.apply_settings(base, ["adam"])
    assert (fixed.optimizer, fixed.lr) == ("adam", 1e-3)
    assert base.optimizer == "sgd" and base.lr == 1.5  # untouched
    assert "torch.optim.Adam(model.parameters(), lr=0.001)" in remedies.check(net(), "adam").code
    # Adam applies first, so a rate change in the same set scales Adam's rate.
    both = remedies.apply_settings(base, ["lower_lr", "adam"])
    assert (both.optimizer, both.lr) == ("adam", pytest.approx(1e-4))
    run = gw.Run(net(), batch(), fixed, name="adam")  # torch builds and steps it
    assert run.start().join(30) is gw.RunState.FINISHED
    with pytest.raises(gw.RemedyNotApplicable, match="already trains with 'adam'"):
        remedies.apply_settings(fixed, ["adam"])


def test_settings_remedies_refuse_with_a_sentence_and_stay_apart_from_models() -> None:
    clipped = gw.TrainConfig(clip_grad=0.5)
    with pytest.raises(
        gw.RemedyNotApplicable, match=r"already clips the global gradient norm at 0\.5"
    ):
        remedies.apply_settings(clipped, ["clip_grad"])
    with pytest.raises(ValueError, match="change the training settings, not the model"):
        gw.apply_remedies(net(), ["relu", "clip_grad"])
    with pytest.raises(ValueError, match="change the model, not the training settings"):
        remedies.apply_settings(clipped, ["residual"])
    assert remedies.split(["lower_lr", "he_init", "relu", "clip_grad"]) == (
        ("relu", "he_init"), ("clip_grad", "lower_lr"),
    )  # fmt: skip


# -- the registry ----------------------------------------------------------------------------------


def test_every_remedy_is_one_record_and_names_labels_come_from_it() -> None:
    names = [r.name for r in REGISTRY]
    assert len(set(names)) == len(names) == 12
    assert len({r.label for r in REGISTRY}) == len(names)
    assert len({r.order for r in REGISTRY}) == len(names)
    assert {r.name: r.label for r in REGISTRY} == remedies.LABELS
    assert (
        tuple(r.name for r in sorted(REGISTRY, key=lambda r: r.target is Target.SETTINGS))
        == remedies.REMEDY_NAMES + remedies.SETTINGS_NAMES
    )
    assert all((r.group is Group.TRAINING) == (r.target is Target.SETTINGS) for r in REGISTRY)
    assert {r.group for r in REGISTRY} == set(Group)
    with pytest.raises(dataclasses.FrozenInstanceError):
        REGISTRY[0].name = "other"  # type: ignore[misc]
    stand_ins = [r.instead for r in REGISTRY if r.instead is not None]
    assert all(name in remedies.LABELS for name in stand_ins)


def test_remedies_apply_activation_then_skip_then_norm_then_init() -> None:
    by_group = {g: [r.order for r in REGISTRY if r.group is g] for g in Group}
    sequence = (Group.ACTIVATION, Group.ARCHITECTURE, Group.NORMALISATION, Group.INITIALISATION)
    for earlier, later in itertools.pairwise(sequence):
        assert max(by_group[earlier]) < min(by_group[later])


def test_every_remedy_the_diagnosis_suggests_is_registered() -> None:
    suggested = {name for _, _, names in findings.KINDS.values() for name in names}
    assert suggested <= set(remedies.LABELS)
    assert {"residual", "clip_grad", "lower_lr", "leaky_relu"} <= suggested
    kinds = findings.KINDS
    assert kinds["vanishing"][2].index("residual") <= 1  # among the first
    assert kinds["exploding"][2][:2] == kinds["non_finite"][2][:2] == ("clip_grad", "lower_lr")
    assert kinds["dead_units"][2][:2] == ("leaky_relu", "he_init")
    # Too large steps get smaller ones; too small steps larger ones; Adam fits either.
    assert kinds["oscillating"][2][:2] == ("lower_lr", "adam")
    assert set(kinds["slow_convergence"][2]) == set(kinds["plateau"][2]) == {"raise_lr", "adam"}
    assert "adam" in kinds["update_ratio"][2]
