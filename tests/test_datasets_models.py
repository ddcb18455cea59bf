"""Data sets against scikit-learn and numpy; model builders against torch's own layers."""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from gradwidget import datasets, models

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits() -> datasets.Dataset:
    return datasets.digits()


# -- digits -----------------------------------------------------------------------------------


def test_digits_is_a_stratified_split_of_all_sklearn_digits(digits: datasets.Dataset) -> None:
    counts = np.bincount(load_digits().target)
    assert digits.n_classes == 10 and digits.has_test
    assert digits.x_train.dtype == digits.x_test.dtype == torch.float32
    assert digits.y_train.dtype == digits.y_test.dtype == torch.int64
    assert digits.x_train.shape[1:] == digits.x_test.shape[1:] == (64,)
    test_counts = np.bincount(digits.y_test.numpy())
    assert np.array_equal(test_counts, np.round(0.25 * counts))
    assert np.array_equal(np.bincount(digits.y_train.numpy()) + test_counts, counts)


def test_digits_training_inputs_are_standardised(digits: datasets.Dataset) -> None:
    x = digits.x_train.double()
    std = x.std(dim=0, unbiased=False)
    assert torch.allclose(x.mean(dim=0), torch.zeros(64, dtype=x.dtype), atol=1e-5)
    assert torch.allclose(std[std > 0], torch.ones(1, dtype=x.dtype), atol=1e-5)
    assert torch.isfinite(digits.x_test).all()  # constant pixels do not divide by zero


def test_digits_test_split_uses_the_training_statistics(digits: datasets.Dataset) -> None:
    # Raw pixels are integers 0..16, so a standardised column is a grid with step 1/std_train
    # starting at the training minimum. Test values must sit on that same grid; standardised
    # with their own mean and std they would fall between its points.
    checked = 0
    for column in range(64):
        levels = torch.unique(digits.x_train[:, column]).double()
        if len(levels) < 15:  # need neighbouring levels to read the step
            continue
        step = torch.diff(levels).min()
        offsets = (digits.x_test[:, column].double() - levels[0]) / step
        assert torch.allclose(offsets, offsets.round(), atol=1e-3), column
        checked += 1
    assert checked >= 10


def test_digits_split_follows_the_seed() -> None:
    a, b, c = datasets.digits(seed=0), datasets.digits(seed=0), datasets.digits(seed=1)
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_train, b.y_train)
    assert not torch.equal(a.x_test, c.x_test)


def test_digits_without_scikit_learn_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install scikit-learn.*gradwidget\[data\]"):
        datasets.digits()


def test_dataset_is_frozen(digits: datasets.Dataset) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        digits.name = "other"  # type: ignore[misc]


# -- spirals ----------------------------------------------------------------------------------


def test_spirals_are_balanced_seeded_and_standardised() -> None:
    data = datasets.spirals(n=300, classes=3, noise=0.1, seed=2)
    y = torch.cat([data.y_train, data.y_test])
    assert data.x_train.shape[1] == 2 and len(y) == 300 and data.n_classes == 3
    assert torch.equal(torch.bincount(y), torch.full((3,), 100))
    assert torch.allclose(data.x_train.mean(dim=0), torch.zeros(2), atol=1e-5)
    again = datasets.spirals(n=300, classes=3, noise=0.1, seed=2)
    assert torch.equal(data.x_train, again.x_train)
    assert not torch.equal(data.x_train, datasets.spirals(n=300, classes=3, seed=3).x_train)


def test_spirals_are_not_linearly_separable() -> None:
    # A linear classifier fitted by torch itself stays far from perfect: the arms interleave.
    data = datasets.spirals(n=600, classes=3, noise=0.1)
    torch.manual_seed(0)
    linear = nn.Linear(2, 3)
    opt = torch.optim.Adam(linear.parameters(), lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(linear(data.x_train), data.y_train).backward()
        opt.step()
    accuracy = (linear(data.x_train).argmax(1) == data.y_train).float().mean().item()
    assert accuracy < 0.75


def test_spirals_rejects_too_few_points() -> None:
    with pytest.raises(ValueError, match="classes"):
        datasets.spirals(n=3, classes=3)


# -- models -----------------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["sigmoid", "tanh", "relu"])
def test_deep_mlp_is_linear_and_activation_layers_computed_like_torch(activation: str) -> None:
    model = models.deep_mlp(depth=4, width=5, activation=activation, in_features=3, out_features=2)
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert len(linears) == 4 and isinstance(model[-1], nn.Linear)
    x = torch.randn(7, 3)
    h = x
    for i, layer in enumerate(linears):
        h = F.linear(h, layer.weight, layer.bias)
        if i < 3:
            h = getattr(torch, activation)(h)
    assert torch.equal(model(x), h)


def test_deep_mlp_batchnorm_goes_between_each_hidden_linear_and_its_activation() -> None:
    model = models.deep_mlp(depth=3, width=4, batchnorm=True, in_features=2, out_features=1)
    kinds = [type(m) for m in model]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.Sigmoid] * 2 + [nn.Linear]


def test_deep_mlp_of_depth_one_is_one_linear_layer() -> None:
    model = models.deep_mlp(depth=1, in_features=3, out_features=2)
    assert len(model) == 1 and isinstance(model[0], nn.Linear)


@pytest.mark.parametrize("bad", [{"activation": "swish"}, {"depth": 0}])
def test_deep_mlp_rejects_unknown_settings(bad: dict) -> None:
    with pytest.raises(ValueError):
        models.deep_mlp(**bad)


def _first_over_last_gradient(model: nn.Sequential) -> float:
    """The textbook symptom, measured with autograd on one random batch."""
    torch.manual_seed(1)
    F.cross_entropy(model(torch.randn(64, 64)), torch.randint(0, 10, (64,))).backward()
    linears = [m for m in model if isinstance(m, nn.Linear)]
    return (linears[0].weight.grad.norm() / linears[-1].weight.grad.norm()).item()


def test_default_deep_mlp_has_vanishing_gradients_and_relu_with_he_init_does_not() -> None:
    torch.manual_seed(0)
    assert _first_over_last_gradient(models.deep_mlp()) < 1e-5
    torch.manual_seed(0)
    relu = models.deep_mlp(activation="relu")
    for layer in relu:
        if isinstance(layer, nn.Linear):
            nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
    assert _first_over_last_gradient(relu) > 1e-2


def test_small_cnn_takes_images_or_flat_rows_alike() -> None:
    model = models.small_cnn(in_channels=1, n_classes=10)
    images = torch.randn(5, 1, 8, 8)
    out = model(images)
    assert out.shape == (5, 10)
    assert torch.equal(model(images.reshape(5, 64)), out)
    assert any(isinstance(m, nn.Conv2d) for m in model)


def test_small_cnn_learns_digits_quickly(digits: datasets.Dataset) -> None:
    torch.manual_seed(0)
    model = models.small_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for start in range(0, 640, 64):
        xb, yb = digits.x_train[start : start + 64], digits.y_train[start : start + 64]
        opt.zero_grad()
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    with torch.no_grad():
        accuracy = (model(digits.x_test).argmax(1) == digits.y_test).float().mean().item()
    assert accuracy > 0.5


def test_breast_cancer_is_a_stratified_standardised_split_of_all_cases() -> None:
    from sklearn.datasets import load_breast_cancer

    data, counts = datasets.breast_cancer(), np.bincount(load_breast_cancer().target)
    assert data.n_classes == 2 and data.x_train.shape[1:] == (30,)
    total = np.bincount(data.y_train.numpy()) + np.bincount(data.y_test.numpy())
    assert np.array_equal(total, counts)
    assert np.allclose(data.x_train.double().mean(0), 0, atol=1e-5)
    assert np.allclose(data.x_train.double().std(0, unbiased=False), 1, atol=1e-4)


def test_breast_cancer_without_scikit_learn_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"breast_cancer\(\) needs scikit-learn"):
        datasets.breast_cancer()
