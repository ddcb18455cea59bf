"""Small models that show the classic gradient problems in seconds.

``deep_mlp()`` with its defaults (10 sigmoid layers, PyTorch's default init) is the textbook
vanishing-gradient case: the first layer's gradient is about 1e-7 of the last one's and the
network stays at chance on digits. Both builders return plain ``nn.Sequential`` stacks, so
the remedies can swap activations and insert BatchNorm by position.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

__all__ = ["ACTIVATIONS", "deep_mlp", "small_cnn"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "relu": nn.ReLU}


def deep_mlp(
    depth: int = 10,
    width: int = 64,
    activation: str = "sigmoid",
    in_features: int = 64,
    out_features: int = 10,
    batchnorm: bool = False,
) -> nn.Sequential:
    """A stack of ``depth`` Linear layers with an activation between each pair.

    Parameters
    ----------
    depth : int
        Number of Linear layers (at least 1).
    width : int
        Features of every hidden layer.
    activation : {"sigmoid", "tanh", "relu"}
        Activation after every Linear layer but the last.
    in_features, out_features : int
        Input features and outputs (logits, for classification).
    batchnorm : bool
        Insert ``BatchNorm1d`` between each hidden Linear and its activation.

    Returns
    -------
    torch.nn.Sequential
        ``Linear, [BatchNorm1d,] act, ..., Linear``; the last layer has no activation so its
        outputs can be fed to cross-entropy as logits. Uses the global torch RNG for the
        initial weights: call ``torch.manual_seed`` first for a reproducible model.
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    act = _activation(activation)
    sizes = [in_features] + [width] * (depth - 1) + [out_features]
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < depth - 1:
            if batchnorm:
                layers.append(nn.BatchNorm1d(n_out))
            layers.append(act())
    return nn.Sequential(*layers)


def small_cnn(in_channels: int = 1, n_classes: int = 10, activation: str = "relu") -> nn.Sequential:
    """A two-convolution network for 8x8 images such as :func:`gradwidget.datasets.digits`.

    Parameters
    ----------
    in_channels : int
        Channels of the input images.
    n_classes : int
        Number of outputs (logits).
    activation : {"sigmoid", "tanh", "relu"}
        Activation after each convolution and the hidden Linear layer.

    Returns
    -------
    torch.nn.Sequential
        Accepts images ``(N, C, 8, 8)`` or the same flattened to ``(N, C * 64)``.
    """
    act = _activation(activation)
    return nn.Sequential(
        _AsImage(in_channels, 8),
        nn.Conv2d(in_channels, 16, kernel_size=3, padding=1),
        act(),
        nn.Conv2d(16, 32, kernel_size=3, padding=1),
        act(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        act(),
        nn.Linear(64, n_classes),
    )


class _AsImage(nn.Module):
    """Reshape flat ``(N, C*S*S)`` rows to ``(N, C, S, S)`` images; images pass through."""

    def __init__(self, channels: int, side: int) -> None:
        super().__init__()
        self.channels, self.side = channels, side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return x.reshape(len(x), self.channels, self.side, self.side)
        return x

    def extra_repr(self) -> str:
        return f"channels={self.channels}, side={self.side}"


def _activation(name: str) -> type[nn.Module]:
    """The activation class for ``name``, or a ValueError listing the choices."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        ) from None
