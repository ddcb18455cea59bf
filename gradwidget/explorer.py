"""The chain rule, measured: how much of the output's gradient reaches each layer of a stack.

:func:`chain_profile` builds a stack of ``depth`` layers for one :class:`ChainSetting` from a
fixed seed, runs one forward and one backward pass on a fixed batch of the bundled digits (no
training) and returns a :class:`ChainProfile`: the gradient reaching each layer's output, each
hidden layer's mean local derivative ``|f'(z)|``, and the same profile predicted as a product
of local factors, one per layer. :func:`build_stack` gives the same stack as a module to train.

The view (:mod:`gradwidget.view.explorer`) draws these; this module needs only torch and numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import datasets
from ._chain import ACTIVATIONS, INITS, NORMS, derivative, layer, modules, sentence, weights

__all__ = ["ChainProfile", "ChainSetting", "build_stack", "chain_profile", "digits"]

MAX_DEPTH = 100
_IN_FEATURES, _CLASSES = 64, 10  # the digits: 8x8 pixels, ten classes


@dataclass(frozen=True)
class ChainSetting:
    """One position of the explorer's knobs.

    Attributes
    ----------
    depth : int
        Linear layers, 1 to 100; every one but the last (the logits) has an activation.
    activation : {"sigmoid", "tanh", "relu", "leaky_relu", "gelu"}
    init : {"default", "he", "xavier"}
        PyTorch's own, He (Kaiming-normal, ReLU gain) or Xavier (Glorot-uniform) weights.
    weight_scale : float
        Every weight is multiplied by this after initialisation.
    norm : {"none", "batchnorm", "layernorm"}
        Normalisation between each hidden Linear and its activation.
    residual : bool
        ``x + f(x)`` around every hidden layer that keeps its width.
    width : int
        Features of the hidden layers.
    seed : int
        Seed of the weights (the same seed gives the same weights at any depth).
    batch : int
        Samples of the fixed digits batch.
    """

    depth: int = 10
    activation: str = "sigmoid"
    init: str = "default"
    weight_scale: float = 1.0
    norm: str = "none"
    residual: bool = False
    width: int = 64
    seed: int = 0
    batch: int = 256

    def __post_init__(self) -> None:
        for name, value, choices in (
            ("activation", self.activation, ACTIVATIONS),
            ("init", self.init, INITS),
            ("norm", self.norm, NORMS),
        ):
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
        if not 1 <= self.depth <= MAX_DEPTH:
            raise ValueError(f"depth must be between 1 and {MAX_DEPTH}, got {self.depth}")
        if self.width < 1 or self.batch < 2:
            raise ValueError(f"need width >= 1 and batch >= 2, got {self.width}, {self.batch}")
        if not (math.isfinite(self.weight_scale) and self.weight_scale > 0):
            raise ValueError(f"weight_scale must be positive, got {self.weight_scale}")


@dataclass(frozen=True, eq=False)
class ChainProfile:
    """What one forward and backward pass of a :class:`ChainSetting` measured.

    Attributes
    ----------
    setting : ChainSetting
    grad_norms : numpy.ndarray
        ``(depth,)`` L2 norm of the loss gradient with respect to each layer's output, input
        side first; the last entry is the gradient at the logits.
    local_derivatives : numpy.ndarray
        ``(depth - 1,)`` mean ``|f'(z)|`` of each hidden layer's activation at its
        pre-activations ``z``: at most 0.25 for a sigmoid.
    local_factors : numpy.ndarray
        ``(depth - 1,)`` entry ``k``: the factor by which layer ``k + 2`` (counting from 1)
        scales a gradient on its way down to layer ``k + 1``: the gain ``|J^T u| / |u|`` of
        its Jacobian on a fixed random direction ``u``, measured on that layer alone.
    predicted : numpy.ndarray
        ``(depth,)`` the last layer's measured norm times the product of the local factors
        above each layer: the chain rule's prediction of ``grad_norms``. It tracks them within
        a factor of 2 to 4 for sigmoid, tanh, ReLU-family, normalised and residual stacks of
        depth 30; it misses by decades where the gradient lines up with the layers' strongest
        directions instead of a random one (GELU with He init: 400x at depth 30).
    sentence : str
        The profile in words.
    """

    setting: ChainSetting
    grad_norms: np.ndarray
    local_derivatives: np.ndarray
    local_factors: np.ndarray
    predicted: np.ndarray
    sentence: str

    @property
    def ratio(self) -> float:
        """Gradient norm at the first layer over the norm at the last (1.0 for one layer)."""
        return float(self.grad_norms[0] / self.grad_norms[-1])


def chain_profile(setting: ChainSetting | None = None, **changes: Any) -> ChainProfile:
    """Measure the gradient profile of ``setting`` (or of the defaults with ``changes``).

    Parameters
    ----------
    setting : ChainSetting, optional
        The stack to build; :class:`ChainSetting`'s defaults when left out.
    **changes
        Fields of :class:`ChainSetting` to change, e.g. ``depth=30, activation="relu"``.

    Returns
    -------
    ChainProfile
        About 1 ms per layer on one CPU thread (docs/performance.md). Neither the global
        torch RNG nor any model of the caller is touched.
    """
    setting = replace(setting or ChainSetting(), **changes)
    x, y = _batch(setting.batch)
    params = weights(setting, _IN_FEATURES, _CLASSES)
    with torch.enable_grad():
        inputs, outputs, pre = _forward_detached(setting, params, x)
        loss = F.cross_entropy(outputs[-1], y)
        norms, peak, factors = _backward(inputs, outputs, loss, setting.seed)
    with torch.no_grad():
        slopes = np.array([float(derivative(setting.activation, z).abs().mean()) for z in pre])
    gains = np.array(factors, dtype=np.float64)
    # The prediction starts from the measured logits gradient and multiplies its way down.
    predicted = norms[-1] * np.concatenate([np.cumprod(gains[::-1])[::-1], [1.0]])
    lost = 0 < peak < torch.finfo(torch.float32).smallest_normal
    return ChainProfile(setting, norms, slopes, gains, predicted, sentence(setting, norms, lost))


def build_stack(setting: ChainSetting | None = None, **changes: Any) -> nn.Sequential:
    """The stack of ``setting`` as a fresh module, with the weights :func:`chain_profile` used.

    Returns
    -------
    torch.nn.Sequential
        ``Linear, [norm], act, ...`` for plain layers; each hidden layer is a
        :class:`gradwidget.remedies.Residual` when ``residual`` is on; the last ``Linear``
        gives 10 logits. Ready for ``GradPanel(stack, datasets.digits())``.
    """
    setting = replace(setting or ChainSetting(), **changes)
    flat: list[nn.Module] = []
    for block in modules(setting, _IN_FEATURES, _CLASSES):
        flat.extend(block if type(block) is nn.Sequential else [block])
    return nn.Sequential(*flat)


def _forward_detached(
    setting: ChainSetting, params: list[tuple[torch.Tensor, torch.Tensor]], x: torch.Tensor
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Run each layer on a detached copy of its input, so each has a graph of its own."""
    inputs, outputs, pre = [], [], []
    for i, (weight, bias) in enumerate(params):
        x = x.detach().requires_grad_()
        out, z = layer(setting, weight, bias, x, last=i == len(params) - 1)
        inputs.append(x)
        outputs.append(out)
        if z is not None:
            pre.append(z.detach())
        x = out
    return inputs, outputs, pre


def _backward(
    inputs: list[torch.Tensor], outputs: list[torch.Tensor], loss: torch.Tensor, seed: int
) -> tuple[np.ndarray, float, list[float]]:
    """Pass the loss gradient down block by block: its norm at every block's output, the
    largest entry reaching the first block, and the gain on a fixed random direction of each
    block above the first, input side first.

    The gradient travels as a unit vector and its norm as a float64 beside it: a sigmoid
    stack's gradient drops below float32's smallest normal number at depth 44 (see
    docs/performance.md), and the product is the lesson. A vector-Jacobian product is linear,
    so the scaling changes nothing else.
    """
    generator = torch.Generator().manual_seed(seed + 1)
    # Each layer's gain on a random direction: one call, as the layers' graphs are apart.
    # Random signs: the same gain in expectation as a Gaussian, and four times cheaper to draw.
    probes = [torch.randint(0, 2, out.shape, generator=generator) * 2.0 - 1 for out in outputs[1:]]
    probed = (
        torch.autograd.grad(outputs[1:], inputs[1:], probes, retain_graph=True) if probes else ()
    )
    gains = [_norm(p) / _norm(u) for p, u in zip(probed, probes, strict=True)]
    (grad,) = torch.autograd.grad(loss, outputs[-1])
    scale = _norm(grad)
    unit, norms = grad / scale, [scale]
    for i in range(len(outputs) - 1, 0, -1):
        (down,) = torch.autograd.grad(outputs[i], inputs[i], unit)
        step = _norm(down)
        scale *= step
        norms.append(scale)
        unit = down / step if step > 0 else down  # zero: every path is cut, and stays cut
    return np.array(norms[::-1]), float(unit.abs().max()) * scale, gains


def _norm(t: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(t))


@lru_cache(maxsize=4)
def _batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed, seeded batch of the digits' training images (loaded once per process)."""
    data = digits()
    order = torch.randperm(len(data.x_train), generator=torch.Generator().manual_seed(0))
    pick = order[: min(size, len(order))]
    return data.x_train[pick], data.y_train[pick]


@lru_cache(maxsize=1)
def digits() -> datasets.Dataset:
    """:func:`gradwidget.datasets.digits`, loaded once per process (scikit-learn is slow to
    load); the explorer's "Train this" trains on it."""
    return datasets.digits()
