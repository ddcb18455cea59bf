"""A zoo of small models of many shapes, each with tiny synthetic data that fits it.

Shared by the hardening tests: every entry is built fresh (seeded) by :func:`build`, so a test
may train, wrap or move it freely. Outputs are always ``(batch, CLASSES)`` class scores.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import gradwidget as gw

CLASSES = 3
ROWS = 24
FEATURES = 6
SEQ = 5


class Block(nn.Module):
    """A custom module inside a custom module: nested names like ``body.0.fc``."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)
        self.act = nn.Tanh()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.fc(x))


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(FEATURES, 8)
        self.body = nn.ModuleList([Block(8), Block(8)])
        self.head = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.sigmoid(self.stem(x))
        for block in self.body:
            x = block(x)
        return self.head(x)


class Functional(nn.Module):
    """Activations called as functions in ``forward``: no activation module to swap."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(FEATURES, 8), nn.Linear(8, 8)
        self.out = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.fc2(F.sigmoid(self.fc1(x)))))


class Untraceable(Functional):
    """A branch on the data's values: torch.fx cannot trace it, so functional calls stay."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(self.fc1(x))
        if h.mean() > 0.5:  # data-dependent control flow
            h = h * 0.5
        return self.out(torch.sigmoid(self.fc2(h)))


class Frozen(nn.Sequential):
    """The first layer is frozen (requires_grad=False): it never gets a gradient."""

    def __init__(self) -> None:
        super().__init__(nn.Linear(FEATURES, 8), nn.Sigmoid(), nn.Linear(8, CLASSES))
        self[0].requires_grad_(False)


class UnusedBranch(nn.Module):
    """``spare`` is registered but never called: its parameters never get a gradient."""

    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Sequential(nn.Linear(FEATURES, 8), nn.Sigmoid(), nn.Linear(8, CLASSES))
        self.spare = nn.Linear(FEATURES, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


class Tied(nn.Module):
    """Two layers share one weight Parameter (tied weights), each with its own bias."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(FEATURES, 8)
        self.first, self.second = nn.Linear(8, 8), nn.Linear(8, 8)
        self.second.weight = self.first.weight
        self.head = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.sigmoid(self.stem(x))
        return self.head(torch.sigmoid(self.second(torch.sigmoid(self.first(h)))))


class Conv(nn.Sequential):
    """Conv -> Tanh -> global average pool -> Linear, in 1, 2 or 3 spatial dimensions."""

    def __init__(self, dims: int) -> None:
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dims - 1]
        pool = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)[dims - 1]
        super().__init__(
            conv(2, 4, 3, padding=1), nn.Tanh(), pool(1), nn.Flatten(), nn.Linear(4, CLASSES)
        )


class Recurrent(nn.Module):
    """An LSTM or GRU over (batch, time, features); the head reads the last time step."""

    def __init__(self, cell: type[nn.RNNBase]) -> None:
        super().__init__()
        self.rnn = cell(FEATURES, 8, batch_first=True)
        self.head = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


class Encoder(nn.Module):
    """nn.TransformerEncoder over (batch, time, features), mean-pooled."""

    def __init__(self) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0, batch_first=True)
        self.embed = nn.Linear(FEATURES, 8)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)).mean(dim=1))


def _mlp(activation: str = "sigmoid", depth: int = 3) -> nn.Sequential:
    return gw.models.deep_mlp(depth, 8, activation, in_features=FEATURES, out_features=CLASSES)


def _inplace_relu() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(FEATURES, 8), nn.ReLU(inplace=True), nn.Linear(8, CLASSES)
    )  # fmt: skip


@dataclass(frozen=True)
class Entry:
    """A model factory and the shape of one input row (without the batch dimension)."""

    make: Callable[[], nn.Module]
    row: tuple[int, ...] = (FEATURES,)
    dtype: torch.dtype = torch.float32


FLAT, SEQUENCE = (FEATURES,), (SEQ, FEATURES)
ZOO: dict[str, Entry] = {
    "sequential": Entry(_mlp),
    "nested": Entry(Nested),
    "functional": Entry(Functional),
    "untraceable": Entry(Untraceable),
    "relu_inplace": Entry(_inplace_relu),
    "frozen": Entry(Frozen),
    "unused_branch": Entry(UnusedBranch),
    "tied": Entry(Tied),
    "conv1d": Entry(lambda: Conv(1), (2, 7)),
    "conv2d": Entry(lambda: Conv(2), (2, 5, 5)),
    "conv3d": Entry(lambda: Conv(3), (2, 3, 3, 3)),
    "lstm": Entry(lambda: Recurrent(nn.LSTM), SEQUENCE),
    "gru": Entry(lambda: Recurrent(nn.GRU), SEQUENCE),
    "transformer": Entry(Encoder, SEQUENCE),
    "one_layer": Entry(lambda: nn.Linear(FEATURES, CLASSES)),
    "float64": Entry(_mlp, dtype=torch.float64),
    "bfloat16": Entry(_mlp, dtype=torch.bfloat16),
}


def build(name: str, device: str = "cpu") -> nn.Module:
    """A fresh, seeded model of zoo entry ``name`` on ``device``."""
    torch.manual_seed(0)
    entry = ZOO[name]
    return entry.make().to(device=device, dtype=entry.dtype)


def data(name: str, rows: int = ROWS, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 inputs shaped for entry ``name`` and int64 labels, on the CPU."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, *ZOO[name].row, generator=g)
    return x, torch.randint(0, CLASSES, (rows,), generator=g)


def devices() -> list[str]:
    """The devices to test on: the CPU always, CUDA when this machine has it."""
    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
