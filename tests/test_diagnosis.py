"""Tests of the diagnosis rules: synthetic histories first, then a zoo of real, tiny trainings.

Synthetic histories put each rule just either side of its threshold; the zoo trains small
networks with known pathologies and checks the finding against gradients computed by torch.
"""

from __future__ import annotations

import ast
import math
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gradwidget import remedies
from gradwidget.diagnose import rules as diagnosis
from gradwidget.diagnose.rules import Finding, Severity, Thresholds, diagnose
from gradwidget.history import History
from gradwidget.record.recorder import Recorder

LAYERS = ("in", "hidden", "out")
T = Thresholds()
N = 30  # points per synthetic series: more than T.window, so only the window is judged


def history_with(capacity: int = 1024, **series: np.ndarray) -> History:
    """A History holding each given series, one row per step from 0."""
    history = History(LAYERS, capacity)
    for name, rows in series.items():
        for step, row in enumerate(np.asarray(rows, dtype=float)):
            history.append(name, step, row)
    return history


def rows(*values: float, n: int = N) -> np.ndarray:
    return np.tile(np.asarray(values, dtype=float), (n, 1))


def kinds(history: History, thresholds: Thresholds = T) -> list[str]:
    return [f.kind for f in diagnose(history, thresholds)]


def only(history: History, kind: str) -> Finding:
    (finding,) = [f for f in diagnose(history) if f.kind == kind]
    return finding


# -- contract ---------------------------------------------------------------------------------


def test_defaults_are_the_published_thresholds() -> None:
    assert (T.vanishing_ratio, T.vanishing_first_norm) == (1e-3, 1e-4)
    assert (T.exploding_ratio, T.dead_fraction) == (70.0, 0.7)
    assert (T.saturated_fraction, T.plateau_improvement, T.plateau_level) == (0.5, 0.01, 0.5)


def test_thresholds_are_frozen_and_validated() -> None:
    with pytest.raises(AttributeError):
        T.window = 5  # type: ignore[misc]
    with pytest.raises(ValueError, match="min_samples"):
        Thresholds(window=5, min_samples=6)


def test_severity_is_ordered() -> None:
    assert Severity.INFO < Severity.WARNING < Severity.CRITICAL


DIAGNOSE = sorted(Path(diagnosis.__file__).parent.glob("*.py"))


@pytest.mark.parametrize("path", DIAGNOSE, ids=lambda p: p.name)
def test_diagnosis_imports_numpy_only(path: Path) -> None:
    tree = ast.parse(path.read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    outside = {
        n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level
    }
    own = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level}
    stdlib = {"__future__", "dataclasses", "enum", "typing", "math", "functools", "re"}
    stdlib |= {"collections", "collections.abc"}
    assert imported | outside <= stdlib | {"numpy"}
    assert own <= {p.stem for p in DIAGNOSE} | {"history", None}


# -- empty and missing data -------------------------------------------------------------------


def test_empty_history_is_healthy() -> None:
    assert diagnose(History(LAYERS)) == []
    assert diagnose(History(())) == []


def test_all_nan_gradients_give_no_finding_and_no_warning() -> None:
    nan = rows(math.nan, math.nan, math.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an all-NaN median would warn
        assert diagnose(history_with(grad_norm=nan, dead_frac=nan, saturated_frac=nan)) == []


def test_nan_columns_are_skipped_when_finding_first_and_last_layer() -> None:
    # "in" has no gradient (frozen) and "out" none either: hidden alone cannot form a ratio.
    assert kinds(history_with(grad_norm=rows(math.nan, 1e-7, math.nan))) == []
    finding = only(history_with(grad_norm=rows(math.nan, 1e-7, 1e-1)), "vanishing")
    assert finding.layers == ("hidden",)
    assert finding.evidence["ratio"] == pytest.approx(1e-6, rel=1e-5)


def test_too_few_samples_are_not_judged() -> None:
    vanishing = (1e-7, 1e-3, 1e-1)
    assert kinds(history_with(grad_norm=rows(*vanishing, n=T.min_samples - 1))) == []
    assert kinds(history_with(grad_norm=rows(*vanishing, n=T.min_samples))) == ["vanishing"]


# -- each rule at its threshold ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "last", "fires"),
    [
        (0.99 * T.vanishing_ratio * 0.05, 0.05, True),  # the ratio rule binds
        (1.01 * T.vanishing_ratio * 0.05, 0.05, False),
        (0.99 * T.vanishing_first_norm, 1.0, True),  # the first-norm rule binds
        (1.01 * T.vanishing_first_norm, 1.0, False),
    ],
)
def test_vanishing_threshold(first: float, last: float, fires: bool) -> None:
    history = history_with(grad_norm=rows(first, last, last))
    assert ("vanishing" in kinds(history)) is fires


@pytest.mark.parametrize(("factor", "fires"), [(1.01, True), (0.99, False)])
def test_exploding_threshold(factor: float, fires: bool) -> None:
    history = history_with(grad_norm=rows(factor * T.exploding_ratio * 0.1, 1.0, 0.1))
    assert ("exploding" in kinds(history)) is fires


@pytest.mark.parametrize(
    ("metric", "kind", "limit"),
    [
        ("dead_frac", "dead_units", T.dead_fraction),
        ("saturated_frac", "saturation", T.saturated_fraction),
    ],
)
@pytest.mark.parametrize(("offset", "fires"), [(0.01, True), (0.0, True), (-0.01, False)])
def test_fraction_thresholds(metric: str, kind: str, limit: float, offset: float, fires: bool):
    # The output layer has no activation after it: NaN, not applicable.
    history = history_with(**{metric: rows(0.1, limit + offset, math.nan)})
    found = [f.layers for f in diagnose(history) if f.kind == kind]
    assert found == ([("hidden",)] if fires else [])


def plateau_loss(last_improvement: float) -> np.ndarray:
    """Flat at 2.0, then the last half window lower by ``last_improvement`` (relative)."""
    half = T.plateau_window // 2
    return np.r_[np.full(T.loss_steps - half, 2.0), np.full(half, 2.0 * (1 - last_improvement))]


@pytest.mark.parametrize(("improvement", "fires"), [(0.009, True), (0.011, False)])
def test_plateau_threshold(improvement: float, fires: bool) -> None:
    history = history_with(loss=plateau_loss(improvement))
    assert ("plateau" in kinds(history)) is fires


def test_no_plateau_once_the_loss_has_halved() -> None:
    halved = np.r_[np.full(T.loss_steps - T.plateau_window, 2.0), np.full(T.plateau_window, 0.99)]
    assert kinds(history_with(loss=halved)) == []
    assert kinds(history_with(loss=np.full(T.loss_steps - 1, 2.0))) == []  # too early to judge


# -- windows: noise does not fire, the recent past decides --------------------------------------


def test_one_noisy_step_does_not_fire() -> None:
    grads, dead = rows(0.1, 0.1, 0.1), rows(0.0, 0.0, math.nan)
    grads[-1] = (1e-9, 0.1, 0.1)  # one vanishing step
    grads[-2] = (1e3, 0.1, 0.1)  # one exploding step
    dead[-1] = (1.0, 1.0, math.nan)
    assert kinds(history_with(grad_norm=grads, dead_frac=dead)) == []


def test_a_sustained_problem_fires_despite_noise() -> None:
    grads = rows(1e-7, 1e-3, 1e-1)
    grads[-3:] = (0.1, 0.1, 0.1)  # a few healthy-looking steps inside the window
    assert kinds(history_with(grad_norm=grads)) == ["vanishing"]


def test_only_the_recent_window_counts() -> None:
    recovered = np.r_[rows(1e-7, 1e-3, 1e-1, n=100), rows(0.1, 0.1, 0.1, n=T.window)]
    assert kinds(history_with(grad_norm=recovered)) == []


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_single_non_finite_loss_anywhere_is_reported(bad: float) -> None:
    loss = np.full(500, 1.0)
    loss[37] = bad
    # Inf survives compaction in `hi`; a NaN only while it is a bucket's newest point.
    capacity = 8 if bad == math.inf else 1024
    finding = only(history_with(capacity=capacity, loss=loss), "non_finite")
    assert finding.severity is Severity.CRITICAL
    assert finding.evidence["loss_nonfinite"] == 1.0
    assert finding.evidence["first_step"] >= 37


def test_a_single_non_finite_gradient_survives_compaction() -> None:
    counts = np.zeros((500, 3))
    counts[:, 0] = math.nan  # a layer without gradient counts nothing
    counts[37] = (math.nan, 5, 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        finding = only(history_with(capacity=8, nonfinite=counts), "non_finite")
    assert finding.layers == ("hidden",)
    assert finding.evidence["nonfinite_entries"] == 5
    assert "hidden" in finding.message


# -- findings: order, names, words ------------------------------------------------------------


def test_most_severe_first() -> None:
    counts = np.zeros((T.loss_steps, 3))
    counts[-1] = (1, 0, 0)
    history = history_with(
        loss=np.full(T.loss_steps, 2.0),
        grad_norm=rows(1e-8, 1e-3, 1e-1, n=T.loss_steps),
        nonfinite=counts,
    )
    findings = diagnose(history)
    assert [f.kind for f in findings] == ["non_finite", "vanishing", "plateau"]
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, reverse=True)


def test_vanishing_names_layers_and_explains_with_numbers() -> None:
    finding = only(history_with(grad_norm=rows(1e-7, 5e-5, 1e-1)), "vanishing")
    assert finding.layers == ("in", "hidden")  # both below 1e-3 x the last layer's norm
    assert finding.evidence["ratio"] == pytest.approx(1e-6, rel=1e-5)
    assert finding.evidence["per_layer_factor"] == pytest.approx(1e-3, rel=1e-5)
    assert "0.25" in finding.message and "1e-06" in finding.message
    assert finding.title == "Vanishing gradients"
    assert finding.remedies[:2] == ("residual", "relu")  # a skip connection among the first


def test_every_finding_offers_known_remedies_and_a_title() -> None:
    history = history_with(
        grad_norm=rows(1e3, 1.0, 1.0, n=T.loss_steps),
        dead_frac=rows(0.9, 0.9, math.nan, n=T.loss_steps),
        saturated_frac=rows(0.9, math.nan, math.nan, n=T.loss_steps),
        loss=np.r_[np.full(T.loss_steps, 2.0), math.nan],
        nonfinite=rows(0, 0, 1, n=T.loss_steps),
    )
    findings = diagnose(history)
    assert {f.kind for f in findings} == {
        "non_finite",
        "exploding",
        "dead_units",
        "saturation",
        "plateau",
    }
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, reverse=True)
    for f in findings:
        assert set(f.remedies) <= set(remedies.LABELS)
        assert f.title and f.message and all(np.isfinite(list(f.evidence.values())))


# -- the zoo: real training, torch as the oracle ------------------------------------------------

IN, CLASSES = 16, 4


def toy_data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, IN, generator=g)
    return x, (x @ torch.randn(IN, CLASSES, generator=g)).argmax(1)


def mlp(
    depth: int, act: type[nn.Module], width: int = 16, batchnorm: bool = False
) -> nn.Sequential:
    layers: list[nn.Module] = []
    for fan_in in [IN] + [width] * (depth - 2):
        layers += [nn.Linear(fan_in, width)]
        layers += [nn.BatchNorm1d(width)] if batchnorm else []
        layers += [act()]
    return nn.Sequential(*layers, nn.Linear(width, CLASSES))


def reinit(model: nn.Module, gain: float | None = None, bias: float | None = None) -> nn.Module:
    """Weights N(0, gain**2 / fan_in) and/or a constant bias, on every Linear."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Linear) and gain is not None:
                m.weight.normal_(0, gain / math.sqrt(m.in_features))
            if isinstance(m, nn.Linear) and bias is not None:
                m.bias.fill_(bias)
    return model


def he_init(model: nn.Module) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


def train(model: nn.Module, lr: float = 0.1, steps: int = 150) -> tuple[History, tuple[str, ...]]:
    x, y = toy_data()
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    order = torch.Generator().manual_seed(0)
    with Recorder(model, act_every=5, budget=None) as rec:
        for _ in range(steps):
            idx = torch.randint(0, len(x), (32,), generator=order)
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            rec.capture(loss)
            opt.step()
        return rec.history, rec.layers


def torch_grad_ratio(model: nn.Sequential) -> float:
    """First/last Linear gradient-norm ratio on the whole data set, by autograd alone."""
    x, y = toy_data()
    linears = [m for m in model if isinstance(m, nn.Linear)]
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    norms = [torch.cat([p.grad.flatten() for p in m.parameters()]).norm() for m in linears]
    return float(norms[0] / norms[-1])


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


@pytest.mark.parametrize(
    "make",
    [
        lambda: mlp(10, nn.Sigmoid),  # PyTorch's default init
        lambda: reinit(mlp(10, nn.Tanh), gain=0.2),  # small init; biases keep activations up
    ],
    ids=["sigmoid", "tanh-small-init"],
)
def test_zoo_deep_saturating_nets_vanish(make: Callable[[], nn.Sequential]) -> None:
    model = make()
    history, layers = train(model)
    finding = only(history, "vanishing")
    assert finding.layers[0] == layers[0]
    assert torch_grad_ratio(model) < T.vanishing_ratio  # torch agrees


def test_zoo_relu_with_negative_bias_dies() -> None:
    model = reinit(mlp(4, nn.ReLU), bias=-3.0)
    history, layers = train(model)
    hidden = set(only(history, "dead_units").layers)
    assert hidden and layers[-1] not in hidden
    x, _ = toy_data()
    for i, m in enumerate(model):  # torch: units silent for every input of the data set
        x = m(x)
        if isinstance(m, nn.ReLU) and str(i - 1) in hidden:
            assert (x.amax(0) == 0).float().mean() >= T.dead_fraction


def test_zoo_large_init_tanh_explodes() -> None:
    # Weights of std 8/sqrt(fan_in) put tanh in the chaotic regime: sigma_w**2 E[tanh'**2] > 1.
    model = reinit(mlp(10, nn.Tanh, width=32), gain=8.0, bias=0.0)
    history, layers = train(model, lr=0.01, steps=100)
    finding = only(history, "exploding")
    assert finding.severity is Severity.CRITICAL and finding.layers[0] == layers[0]
    assert torch_grad_ratio(model) > T.exploding_ratio


def test_zoo_huge_learning_rate_turns_non_finite() -> None:
    model = he_init(mlp(4, nn.ReLU))
    history, _ = train(model, lr=50.0, steps=40)
    assert not all(torch.isfinite(p).all() for p in model.parameters())  # torch: NaN weights
    finding = diagnose(history)[0]
    assert finding.kind == "non_finite" and finding.evidence["loss_nonfinite"] == 1.0


@pytest.mark.parametrize(
    "make",
    [lambda: he_init(mlp(6, nn.ReLU, width=32)), lambda: mlp(6, nn.Sigmoid, 32, batchnorm=True)],
    ids=["relu-he", "batchnorm"],
)
def test_zoo_healthy_nets_have_no_finding(make: Callable[[], nn.Sequential]) -> None:
    model = make()
    history, _ = train(model)
    assert diagnose(history) == []
    assert T.vanishing_ratio < torch_grad_ratio(model) < T.exploding_ratio
    assert history.loss[-20:].mean() < 0.5 * history.loss[:20].mean()  # it really learns


# -- the rules added from AUTOTRAINER's problem set, and the update ratio --------------------


@pytest.mark.parametrize(("factor", "fires"), [(0.99, True), (1.01, False)])
def test_update_ratio_gap_threshold(factor: float, fires: bool) -> None:
    ratios = rows(factor * T.update_gap * 1e-2, 1e-3, 1e-2)
    found = [f for f in diagnose(history_with(update_ratio=ratios)) if f.kind == "update_ratio"]
    assert [f.layers for f in found] == ([("in",)] if fires else [])
    if fires:
        assert found[0].evidence["gap"] == pytest.approx(factor * T.update_gap, rel=1e-4)
        assert "1.0e-02" in found[0].message and found[0].remedies[0] == "adam"


def test_update_ratio_too_large_and_frozen_layers() -> None:
    wild = only(history_with(update_ratio=rows(0.2, 0.1, 0.1)), "update_ratio")
    assert wild.layers == ("in",) and wild.evidence["largest_ratio"] == pytest.approx(0.2)
    # A frozen layer moves by exactly 0: nothing to judge, not "updating too little".
    assert kinds(history_with(update_ratio=rows(0.0, 1e-3, 1e-3))) == []


def noisy(level: np.ndarray, seed: int = 0, spread: float = 0.05) -> np.ndarray:
    """Per-step losses around ``level``, with minibatch-like multiplicative noise."""
    rng = np.random.default_rng(seed)
    return level * np.exp(rng.normal(0, spread, level.size))


def test_a_loss_that_swings_is_oscillating_not_a_plateau() -> None:
    steps = np.arange(400)
    level = np.r_[np.linspace(2.3, 0.8, 200), 1.2 + 0.6 * np.sin(steps[200:] / 6)]
    finding = only(history_with(train_loss=noisy(level)), "oscillating")
    assert finding.evidence["swing"] >= T.oscillation or finding.evidence["rebound"] >= 0.25
    assert {"plateau", "slow_convergence"}.isdisjoint(kinds(history_with(train_loss=noisy(level))))


def test_a_converged_noisy_loss_is_healthy() -> None:
    level = np.r_[np.linspace(2.3, 0.05, 200), np.full(200, 0.05)]
    assert kinds(history_with(train_loss=noisy(level, spread=0.6))) == []


def test_an_accuracy_falling_far_below_its_best_is_oscillating() -> None:
    history = history_with(train_loss=noisy(np.linspace(2.3, 0.2, 400)))
    accuracy = (0.5, 0.8, 0.9, 0.92, 0.9, 0.6, 0.62, 0.65)
    for step, value in zip(range(0, 400, 50), accuracy, strict=True):
        history.append("test_accuracy", step, value)
    finding = only(history, "oscillating")
    assert finding.evidence["accuracy_drop"] == pytest.approx(0.32, abs=1e-6)
    assert "test accuracy fell 32%" in finding.message


@pytest.mark.parametrize(
    ("end", "kind"),
    [(2.0, "slow_convergence"), (1.3, None), (2.295, "plateau")],  # 1.3: halving within reach
)
def test_slow_convergence_against_plateau(end: float, kind: str | None) -> None:
    loss = noisy(np.linspace(2.3, end, 400), spread=0.01)
    assert kinds(history_with(train_loss=loss)) == ([kind] if kind else [])


@pytest.mark.parametrize(("fall", "fires"), [(0.0, False), (0.4, True)])
def test_batch_accuracy_noise_is_not_a_swing_but_a_fall_is(fall: float, fires: bool) -> None:
    # Batches of 8 at 80 %: +-14 points from batch to batch; no test accuracy recorded.
    history = history_with(train_loss=noisy(np.linspace(2.3, 0.5, 400)))
    rng = np.random.default_rng(0)
    for step in range(0, 400, 5):
        level = 0.8 - (fall if step >= 300 else 0.0)
        history.append("accuracy", step, float(np.clip(level + rng.normal(0, 0.14), 0, 1)))
    assert ("oscillating" in kinds(history)) is fires


@pytest.mark.parametrize("n", [40, 41, 333])
def test_loss_chunk_medians_are_numpy_medians_of_each_chunk(n: int) -> None:
    from gradwidget.diagnose.loss import _CHUNKS, _Loss

    rng = np.random.default_rng(n)
    steps = np.sort(rng.choice(5 * n, n, replace=False))
    values = rng.lognormal(size=n)
    loss = _Loss(steps, values, int(steps[-1]), n, 1.0, 1.0, 1.0)
    medians, inside = loss.chunk_medians()
    index = (loss.last - steps) // max(n // _CHUNKS, 1)
    chunks = np.unique(index)[::-1]
    np.testing.assert_array_equal(medians, [np.median(values[index == i]) for i in chunks])
    np.testing.assert_array_equal(inside, chunks < _CHUNKS)
