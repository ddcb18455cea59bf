"""The zoo of the Find-a-fix benchmark: broken and healthy nets on three offline data sets.

Each :class:`Setup` plants one problem (``kind``) in an otherwise ordinary training setup, or
none (healthy). The problems are made the ways they arise in practice: saturating activations
in a deep stack (vanishing), weights initialised too large (exploding, saturation), a negative
bias (dead ReLU units), a learning rate far too large (NaN, oscillation) or far too small
(slow convergence, plateau). MLPs run on all three data sets, CNNs on the digits' 8x8 images.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import torch
from torch import nn

from gradwidget import datasets
from gradwidget.datasets import Dataset

__all__ = ["BARS", "SETUPS", "Setup", "data_for"]

# A repaired net must reach this test accuracy: what a healthy net of the zoo reaches, less a
# margin (measured: digits 94-97 %, spirals 93-99 %, breast cancer 96-98 %).
BARS = {"digits": 0.90, "spirals": 0.85, "breast_cancer": 0.93}
_SHAPES = {"digits": (64, 10), "spirals": (2, 3), "breast_cancer": (30, 2)}


@dataclass(frozen=True)
class Setup:
    """One net of the zoo: its data, how to build it, how to train it, what is wrong."""

    name: str
    kind: str | None  # the planted problem; None: healthy
    data: str
    build: Callable[[], nn.Module]
    config: dict[str, Any] = field(default_factory=dict)

    def model(self, seed: int = 0) -> nn.Module:
        """The initial model (seeded)."""
        torch.manual_seed(seed)
        return self.build()


@cache
def data_for(name: str) -> Dataset:
    """The data set ``name`` (built once)."""
    return {"digits": datasets.digits, "spirals": datasets.spirals,
            "breast_cancer": datasets.breast_cancer}[name]()  # fmt: skip


def mlp(
    data: str, depth: int, width: int, act: str, scale: float = 1.0, bias: float | None = None
) -> Callable[[], nn.Module]:
    """A builder of a ``depth``-layer MLP for ``data``; weights times ``scale``, hidden biases
    set to ``bias`` (None: PyTorch's default init)."""
    n_in, n_out = _SHAPES[data]
    acts = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}

    def build() -> nn.Module:
        sizes = [n_in] + [width] * (depth - 1) + [n_out]
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(nn.Linear(sizes[i], sizes[i + 1]))
            if i < depth - 1:
                layers.append(acts[act]())
        return _planted(nn.Sequential(*layers), scale, bias)

    return build


def cnn(
    depth: int, act: str, scale: float = 1.0, bias: float | None = None
) -> Callable[[], nn.Module]:
    """A builder of a ``depth``-conv CNN for the digits' 8x8 images (16 channels, 3x3)."""
    acts = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}

    def build() -> nn.Module:
        layers: list[nn.Module] = [nn.Unflatten(1, (1, 8, 8))]
        for i in range(depth):
            layers += [nn.Conv2d(1 if i == 0 else 16, 16, 3, padding=1), acts[act]()]
        layers += [nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 16, 10)]
        return _planted(nn.Sequential(*layers), scale, bias)

    return build


def normal(build: Callable[[], nn.Module], gain: float) -> Callable[[], nn.Module]:
    """``build``, its weights re-drawn from N(0, gain / sqrt(fan_in)) (notebook 03's way)."""

    def rebuilt() -> nn.Module:
        model = build()
        with torch.no_grad():
            for layer in model.modules():
                if isinstance(layer, nn.Linear | nn.Conv2d):
                    nn.init.normal_(layer.weight, std=gain / layer.weight[0].numel() ** 0.5)
        return model

    return rebuilt


def _planted(model: nn.Module, scale: float, bias: float | None) -> nn.Module:
    """Scale every weight; set every hidden bias (all but the output layer's)."""
    layers = [m for m in model.modules() if isinstance(m, nn.Linear | nn.Conv2d)]
    with torch.no_grad():
        for i, layer in enumerate(layers):
            layer.weight.mul_(scale)
            if bias is not None and i < len(layers) - 1:
                layer.bias.fill_(bias)
    return model


def lr(rate: float, **more: Any) -> dict[str, Any]:
    """SGD at ``rate`` (600 steps, batch 64 unless ``more`` says otherwise)."""
    return {"lr": rate, **more}


def adam(rate: float, **more: Any) -> dict[str, Any]:
    """Adam at ``rate``."""
    return {"optimizer": "adam", "lr": rate, **more}


VAN, EXP, DEAD, SAT = "vanishing", "exploding", "dead_units", "saturation"
OSC, SLOW = "oscillating", "slow_convergence"


def _zoo() -> tuple[Setup, ...]:
    d, s, c, S, sgd = "digits", "spirals", "breast_cancer", Setup, {"steps": 600, "lr": 0.1}
    return (
        # vanishing: saturating activations in a deep stack
        S("digits sigmoid MLP x10", VAN, d, mlp(d, 10, 64, "sigmoid"), sgd),
        S("spirals sigmoid MLP x8", VAN, s, mlp(s, 8, 32, "sigmoid"), sgd),
        S("cancer sigmoid MLP x10", VAN, c, mlp(c, 10, 32, "sigmoid"), sgd),
        S("digits sigmoid CNN x6", VAN, d, cnn(6, "sigmoid"), sgd),
        S("digits tanh MLP x12 small init", VAN, d, mlp(d, 12, 64, "tanh", 0.5), sgd),
        # exploding (AUTOTRAINER counts NaN/Inf here): tanh weights six to eight times too
        # large at a small rate (the gradient grows on its way back), ReLU weights five times
        # too large, or a learning rate far too large (both end in NaN)
        S("digits tanh MLP x10 init N(6)", EXP, d, normal(mlp(d, 10, 64, "tanh"), 6.0), lr(0.01)),
        S("digits tanh MLP x12 init N(6)", EXP, d, normal(mlp(d, 12, 64, "tanh"), 6.0), lr(0.01)),
        S("cancer tanh MLP x12 init N(8)", EXP, c, normal(mlp(c, 12, 64, "tanh"), 8.0), lr(1e-3)),
        S("digits ReLU MLP x10 init x5", EXP, d, mlp(d, 10, 64, "relu", 5.0), lr(0.01)),
        S("spirals ReLU MLP x10 init x5", EXP, s, mlp(s, 10, 32, "relu", 5.0), lr(0.01)),
        S("digits ReLU CNN x6 init x6", EXP, d, cnn(6, "relu", 6.0), lr(0.01)),
        S("digits ReLU MLP x4 lr 5", EXP, d, mlp(d, 4, 64, "relu"), lr(5.0)),
        S("spirals ReLU MLP x4 lr 50", EXP, s, mlp(s, 4, 64, "relu"), lr(50.0)),
        S("cancer ReLU MLP x4 lr 20", EXP, c, mlp(c, 4, 64, "relu"), lr(20.0)),
        # dead units: a negative bias switches most ReLUs off for good, or one huge step does
        S("digits ReLU MLP x5 bias -1.5", DEAD, d, mlp(d, 5, 64, "relu", bias=-1.5), sgd),
        S("spirals ReLU MLP x5 bias -1.5", DEAD, s, mlp(s, 5, 64, "relu", bias=-1.5), sgd),
        S("cancer ReLU MLP x5 bias -1.5", DEAD, c, mlp(c, 5, 64, "relu", bias=-1.5), sgd),
        S("digits ReLU CNN x3 bias -1", DEAD, d, cnn(3, "relu", bias=-1.0), sgd),
        S("digits ReLU MLP x3 lr 2.5", DEAD, d, mlp(d, 3, 64, "relu"), lr(2.5)),
        S("digits ReLU CNN x2 lr 1.5", DEAD, d, cnn(2, "relu"), lr(1.5)),
        # saturation: sigmoid/tanh fed pre-activations far from 0
        S("digits sigmoid MLP x3 init x30", SAT, d, mlp(d, 3, 64, "sigmoid", 30.0), sgd),
        S("spirals tanh MLP x4 init x20", SAT, s, mlp(s, 4, 64, "tanh", 20.0), sgd),
        S("cancer sigmoid MLP x3 init x30", SAT, c, mlp(c, 3, 64, "sigmoid", 30.0), sgd),
        S("digits tanh CNN x2 init x20", SAT, d, cnn(2, "tanh", 20.0), sgd),
        # oscillating: a learning rate too large to settle, not large enough to overflow
        S("spirals ReLU MLP x3 lr 1.5", OSC, s, mlp(s, 3, 64, "relu"), lr(1.5)),
        S("spirals ReLU MLP x3 lr 2", OSC, s, mlp(s, 3, 64, "relu"), lr(2.0)),
        S("spirals ReLU MLP x4 lr 1", OSC, s, mlp(s, 4, 64, "relu"), lr(1.0)),
        S("spirals ReLU MLP x3 lr 1.5, seed 1", OSC, s, mlp(s, 3, 64, "relu"), lr(1.5, seed=1)),
        S("digits ReLU MLP x3 lr 1, batch 16", OSC, d, mlp(d, 3, 64, "relu"), lr(1, batch_size=16)),
        S("digits ReLU CNN x2 lr 0.5, batch 16", OSC, d, cnn(2, "relu"), lr(0.5, batch_size=16)),
        # slow convergence (AUTOTRAINER's; our plateau is its stalled end): a learning rate
        # far too small
        S("digits ReLU MLP x3 lr 1e-3", SLOW, d, mlp(d, 3, 64, "relu"), lr(1e-3)),
        S("spirals ReLU MLP x4 lr 1e-3", SLOW, s, mlp(s, 4, 64, "relu"), lr(1e-3)),
        S("cancer ReLU MLP x3 lr 3e-4", SLOW, c, mlp(c, 3, 64, "relu"), lr(3e-4)),
        S("digits ReLU CNN x2 lr 1e-3", SLOW, d, cnn(2, "relu"), lr(1e-3)),
        S("digits ReLU MLP x3 lr 1e-5", SLOW, d, mlp(d, 3, 64, "relu"), lr(1e-5)),
        S("spirals tanh MLP x3 lr 1e-5", SLOW, s, mlp(s, 3, 64, "tanh"), lr(1e-5)),
        S("cancer ReLU MLP x3 lr 1e-5", SLOW, c, mlp(c, 3, 64, "relu"), lr(1e-5)),
        # healthy: ordinary settings, several lengths, tiny steps, Adam
        S("digits ReLU MLP x4, 400 steps", None, d, mlp(d, 4, 64, "relu"), {"steps": 400}),
        S("digits ReLU MLP x4, 600 steps", None, d, mlp(d, 4, 64, "relu"), {"steps": 600}),
        S("digits ReLU MLP x4, 1000 steps", None, d, mlp(d, 4, 64, "relu"), {"steps": 1000}),
        S("digits ReLU CNN x2", None, d, cnn(2, "relu"), lr(0.05)),
        S("digits tanh MLP x3", None, d, mlp(d, 3, 64, "tanh"), {}),
        S("digits ReLU MLP x4 Adam", None, d, mlp(d, 4, 64, "relu"), adam(1e-3)),
        S("spirals ReLU MLP x4 Adam", None, s, mlp(s, 4, 64, "relu"), adam(1e-2, steps=1000)),
        S("spirals ReLU MLP x4", None, s, mlp(s, 4, 64, "relu"), {"steps": 1000}),
        S("cancer ReLU MLP x3", None, c, mlp(c, 3, 32, "relu"), {}),
        S("cancer tiny MLP x2", None, c, mlp(c, 2, 8, "relu"), {}),
        S("cancer tiny MLP x2 Adam", None, c, mlp(c, 2, 8, "relu"), adam(1e-2)),
        S("spirals tanh MLP x3", None, s, mlp(s, 3, 32, "tanh"), lr(0.3, steps=1000)),
    )  # fmt: skip


SETUPS: tuple[Setup, ...] = _zoo()
