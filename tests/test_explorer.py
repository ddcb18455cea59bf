"""The chain-rule explorer: the profile against torch's own backward pass, the textbook cases,
the prediction from local factors, and the widget without a browser."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradwidget import datasets
from gradwidget._chain import ACTIVATIONS, derivative
from gradwidget.explorer import ChainSetting, build_stack, chain_profile
from gradwidget.remedies import Residual

# Settings where a layer's gain on a random direction is the gain on the gradient's direction.
TRACKED = [
    {"depth": 30},
    {"depth": 30, "init": "xavier"},
    {"depth": 30, "activation": "tanh"},
    {"depth": 30, "activation": "relu", "init": "he"},
    {"depth": 30, "residual": True},
    {"depth": 30, "norm": "layernorm"},
]


def autograd_profile(setting: ChainSetting) -> np.ndarray:
    """The oracle: norms of the loss gradient at each layer's output, from a plain
    ``loss.backward()`` through ``build_stack`` on the explorer's batch."""
    model = build_stack(setting)
    outputs: list[torch.Tensor] = []

    def keep(module: nn.Module, args: tuple, out: torch.Tensor) -> None:
        out.retain_grad()
        outputs.append(out)

    # A layer's output: its activation's (plus the skip: the Residual's), the logits at the end.
    ends = [m for m in model if isinstance(m, (Residual, *ACTIVATIONS.values()))] + [model[-1]]
    for module in ends:
        module.register_forward_hook(keep)
    x, y = explorer_batch(setting.batch)
    F.cross_entropy(model(x), y).backward()
    return np.array([float(out.grad.norm()) for out in outputs])


def explorer_batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The digits batch the explorer documents: the first ``size`` of a seed-0 permutation."""
    data = datasets.digits()
    order = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(0))
    return data.x_train[order[:size]], data.y_train[order[:size]]


@pytest.mark.parametrize(
    "changes",
    [
        {"depth": 8},
        {"depth": 8, "activation": "tanh", "norm": "layernorm", "residual": True},
        {"depth": 6, "activation": "gelu", "norm": "batchnorm", "init": "xavier"},
        {"depth": 5, "activation": "leaky_relu", "init": "he", "weight_scale": 1.5, "width": 32},
        {"depth": 1},
    ],
)
def test_profile_matches_torch_autograd(changes: dict) -> None:
    setting = ChainSetting(**changes)
    profile = chain_profile(setting)
    assert profile.grad_norms.shape == (setting.depth,)
    np.testing.assert_allclose(profile.grad_norms, autograd_profile(setting), rtol=1e-4)


def test_thirty_sigmoid_layers_vanish() -> None:
    profile = chain_profile(depth=30, activation="sigmoid")
    assert profile.ratio < 1e-4
    assert np.all(profile.local_derivatives <= 0.25)  # sigmoid's ceiling, at every layer


def test_relu_with_he_init_keeps_the_gradient_within_a_factor_of_20() -> None:
    profile = chain_profile(depth=30, activation="relu", init="he")
    assert 1 / 20 < profile.ratio < 20


def test_residual_connections_lift_the_sigmoid_ratio_by_orders_of_magnitude() -> None:
    plain = chain_profile(depth=30, activation="sigmoid")
    residual = chain_profile(depth=30, activation="sigmoid", residual=True)
    assert residual.ratio > 1e6 * plain.ratio
    assert residual.ratio > 0.1


@pytest.mark.parametrize("changes", TRACKED, ids=lambda c: "-".join(map(str, c.values())))
def test_predicted_product_tracks_the_measured_profile(changes: dict) -> None:
    profile = chain_profile(**changes)
    assert profile.predicted[-1] == profile.grad_norms[-1]  # the product starts at the logits
    off = np.abs(np.log10(profile.predicted / profile.grad_norms))
    assert off.max() < 0.5, off  # within a factor of 3 at every layer


def test_local_factors_run_input_side_first_and_mean_the_layer_gain() -> None:
    # The logits layer has no activation: its factor is its weight's gain on a random
    # direction, |W|_F / sqrt(outputs); the sigmoid layers below it pass far less.
    profile = chain_profile(depth=30)
    weight = build_stack(depth=30)[-1].weight.detach()
    gain = float(torch.linalg.matrix_norm(weight)) / weight.shape[0] ** 0.5
    assert profile.local_factors[-1] == pytest.approx(gain, rel=0.05)
    assert profile.local_factors[:-1].max() < 0.3 * gain  # about 0.14 against 0.56
    steps = profile.predicted[:-1] / profile.predicted[1:]
    np.testing.assert_allclose(steps, profile.local_factors)


def test_predicted_product_does_not_track_a_shuffled_profile() -> None:
    # The tracking test can fail: local factors of another setting miss by decades.
    sigmoid, relu = chain_profile(depth=30), chain_profile(depth=30, activation="relu", init="he")
    predicted = relu.grad_norms[-1] * np.cumprod(sigmoid.local_factors[::-1])[::-1]
    assert np.abs(np.log10(predicted / relu.grad_norms[:-1])).max() > 5


def test_deep_sigmoid_profile_survives_where_float32_training_loses_it() -> None:
    setting = ChainSetting(depth=100)
    profile = chain_profile(setting)
    assert 0 < profile.ratio < 1e-60
    assert "too small for float32" in profile.sentence
    # Torch itself, in float32: the first layer's gradient is exactly zero.
    assert autograd_profile(setting)[0] == 0.0


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_closed_form_derivatives_match_autograd(name: str) -> None:
    z = torch.linspace(-6, 6, 241, dtype=torch.float64, requires_grad=True)
    ACTIVATIONS[name]()(z).sum().backward()
    np.testing.assert_allclose(derivative(name, z.detach()), z.grad, atol=1e-12)


def test_sentence_reads_like_the_issue() -> None:
    text = chain_profile(depth=30).sentence
    pattern = (
        r"30 sigmoid layers: the first layer receives \de-\d+ of the last layer's gradient; "
        r"each layer multiplies it by about 0\.\d+"
    )
    assert re.fullmatch(pattern, text), text
    assert (
        "residual connections and batchnorm"
        in chain_profile(depth=5, residual=True, norm="batchnorm").sentence
    )
    assert (
        "times the last layer's"
        in chain_profile(depth=20, activation="relu", weight_scale=4).sentence
    )
    assert "no chain" in chain_profile(depth=1).sentence


def test_profile_touches_no_global_random_state() -> None:
    before = torch.get_rng_state()
    chain_profile(depth=5)
    build_stack(depth=5)
    assert torch.equal(before, torch.get_rng_state())


def test_same_setting_same_profile_and_weights() -> None:
    np.testing.assert_array_equal(
        chain_profile(depth=7).grad_norms, chain_profile(depth=7).grad_norms
    )
    a, b = build_stack(depth=4, seed=3), build_stack(depth=4, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert not torch.equal(a[0].weight, build_stack(depth=4, seed=4)[0].weight)


@pytest.mark.parametrize(
    "changes",
    [{"depth": 0}, {"depth": 101}, {"activation": "swish"}, {"init": "lecun"}, {"norm": "group"},
     {"weight_scale": 0.0}, {"width": 0}],
)  # fmt: skip
def test_bad_settings_say_what_to_choose(changes: dict) -> None:
    with pytest.raises(ValueError, match=r"depth|choose|weight_scale|width"):
        ChainSetting(**changes)


# -- the widget, without a browser (ipywidgets' dummy comm) -------------------------------


@pytest.fixture
def explorer():
    import gradwidget as gw

    view = gw.explore(depth=12, activation="sigmoid")
    yield view
    view.close()


def test_explore_shows_the_controls_and_the_profile_of_its_arguments(explorer) -> None:
    assert "gw-explorer" in explorer._dom_classes
    names = ["depth", "activation", "init", "weight_scale", "norm", "residual", "width"]
    assert list(explorer.controls) == names
    assert explorer.controls["depth"].value == 12
    expected = chain_profile(depth=12)
    np.testing.assert_allclose(explorer.profile.grad_norms, expected.grad_norms)
    assert explorer.profile.sentence in explorer.sentence.value
    np.testing.assert_allclose(explorer.charts.grad.y, expected.grad_norms)


def test_changing_controls_updates_the_profile_and_the_charts(explorer) -> None:
    explorer.controls["depth"].value = 30
    explorer.controls["activation"].value = "relu"
    explorer.controls["init"].value = "he"
    assert explorer.wait()
    assert explorer.profile.setting == ChainSetting(depth=30, activation="relu", init="he")
    assert 1 / 20 < explorer.profile.ratio < 20
    assert len(explorer.charts.grad.y) == 30 and explorer.charts.x_scale.max == 30
    np.testing.assert_allclose(explorer.charts.predicted.y, explorer.profile.predicted)
    np.testing.assert_allclose(explorer.charts.slope.y, explorer.profile.local_derivatives)
    assert "30 relu layers" in explorer.sentence.value
    explorer.controls["residual"].value = True
    explorer.controls["norm"].value = "layernorm"
    explorer.controls["weight_scale"].value = 0.5
    explorer.controls["width"].value = 32
    assert explorer.wait()
    expected = ChainSetting(30, "relu", "he", 0.5, "layernorm", True, 32)
    assert explorer.profile.setting == expected


def test_a_slider_drag_draws_its_last_value_without_drawing_every_one(explorer, monkeypatch):
    drawn: list[int] = []
    draw = explorer.charts.draw
    monkeypatch.setattr(explorer.charts, "draw", lambda p: (drawn.append(p.setting.depth), draw(p)))
    for depth in range(13, 61):  # one drag: a value per pixel
        explorer.controls["depth"].value = depth
    assert explorer.wait()
    assert drawn[-1] == 60 and explorer.profile.setting.depth == 60
    assert len(drawn) < 48 // 2  # the values in between are skipped, not queued


def test_train_this_opens_a_panel_on_the_same_stack(explorer) -> None:
    from gradwidget.view import GradPanel

    explorer.controls["depth"].value = 6
    explorer.wait()
    explorer.train_button.click()
    panel = explorer.panel
    assert isinstance(panel, GradPanel) and panel in explorer.children[-1].children
    stack = build_stack(depth=6)
    assert all(
        torch.equal(p, q) for p, q in zip(panel.model.parameters(), stack.parameters(), strict=True)
    )
    assert panel.data.name == "digits"
    explorer.train_button.click()  # a second click replaces the first panel
    assert explorer.panel is not panel and explorer.children[-1].children == (explorer.panel,)


def test_explore_is_a_lazy_public_name() -> None:
    import gradwidget as gw

    assert "explore" in gw.__all__
    from gradwidget.view import explore

    assert gw.explore is explore
