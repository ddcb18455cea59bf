"""The models and batches the overhead benchmarks train on (pure torch, seeded)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from gradwidget.models import deep_mlp

__all__ = ["WORKLOADS", "Workload", "make_batches"]


@dataclass(frozen=True)
class Workload:
    """One model to benchmark.

    Attributes
    ----------
    name : str
        Short key used on the command line (``--models``).
    label : str
        What the tables print.
    build : callable
        Returns a fresh model; call under a fixed seed so every copy starts equal.
    input_shape : tuple of int
        Shape of one input batch, batch dimension first.
    block : int
        Steps each configuration runs per round; long enough to outlast timer noise.
    """

    name: str
    label: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]
    block: int
    n_classes: int = 10


def cnn6(channels: tuple[int, ...] = (16, 16, 32, 32, 64, 64)) -> nn.Sequential:
    """Six 3x3 convolutions on 32x32x3 inputs, pooled after every pair, then a linear head."""
    layers: list[nn.Module] = []
    fan_in = 3
    for i, fan_out in enumerate(channels):
        layers += [nn.Conv2d(fan_in, fan_out, 3, padding=1), nn.ReLU()]
        if i % 2:
            layers.append(nn.MaxPool2d(2))
        fan_in = fan_out
    side = 32 // 2 ** (len(channels) // 2)
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(fan_in * side * side, 10))


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "mlp10",
            "MLP 10x256 sigmoid, batch 128",
            lambda: deep_mlp(10, 256, "sigmoid"),
            (128, 64),
            block=20,
        ),
        Workload(
            "mlp20",
            "MLP 20x512 ReLU, batch 128",
            lambda: deep_mlp(20, 512, "relu"),
            (128, 64),
            block=10,
        ),
        Workload("cnn6", "CNN 6 conv, 32x32x3, batch 64", cnn6, (64, 3, 32, 32), block=5),
    )
}


def make_batches(
    workload: Workload, count: int, device: torch.device, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` fixed random batches, cycled by every configuration in the same order."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(count):
        x = torch.randn(workload.input_shape, generator=gen)
        y = torch.randint(workload.n_classes, (workload.input_shape[0],), generator=gen)
        batches.append((x.to(device), y.to(device)))
    return batches
