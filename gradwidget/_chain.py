"""The parts of the explorer's stacks: layers, their initialisation, activation derivatives,
and the profile in words. Private to :mod:`gradwidget.explorer`."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .remedies import Residual

if TYPE_CHECKING:
    from .explorer import ChainSetting

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
}
INITS = ("default", "he", "xavier")
NORMS: dict[str, Callable[[int], nn.Module] | None] = {
    "none": None,
    "batchnorm": nn.BatchNorm1d,
    "layernorm": nn.LayerNorm,
}
_LEAK = 0.01  # nn.LeakyReLU's default negative slope


def derivative(activation: str, z: torch.Tensor) -> torch.Tensor:
    """``f'(z)`` of ``activation`` elementwise, in closed form (cheaper than autograd)."""
    if activation == "sigmoid":
        s = torch.sigmoid(z)
        return s * (1 - s)
    if activation == "tanh":
        return 1 - torch.tanh(z) ** 2
    if activation == "relu":
        return (z > 0).to(z.dtype)
    if activation == "leaky_relu":
        return torch.where(z > 0, 1.0, _LEAK).to(z.dtype)
    # Exact GELU, z * Phi(z): Phi(z) + z * phi(z).
    return 0.5 * (1 + torch.erf(z / math.sqrt(2))) + z * torch.exp(-0.5 * z**2) / math.sqrt(
        2 * math.pi
    )


FUNCTIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": F.relu,
    "leaky_relu": F.leaky_relu,
    "gelu": F.gelu,
}


def weights(
    setting: ChainSetting, n_in: int, n_out: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(weight, bias)`` of every Linear layer, input first, drawn from ``setting.seed`` (a
    generator of its own: the caller's random state is left alone)."""
    generator = torch.Generator().manual_seed(setting.seed)
    sizes = [n_in] + [setting.width] * (setting.depth - 1) + [n_out]
    return [_init(n_in, n_out, setting, generator) for n_in, n_out in itertools.pairwise(sizes)]


def layer(
    setting: ChainSetting, weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, last: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One layer as functions (no modules: building those costs more than the pass itself):
    its output and its activation's pre-activations ``z`` (``None`` for the logits layer)."""
    z = F.linear(x, weight, bias)
    if last:
        return z, None
    if setting.norm == "batchnorm":  # what BatchNorm1d does in training mode, fresh
        z = F.batch_norm(z, None, None, training=True)
    elif setting.norm == "layernorm":
        z = F.layer_norm(z, z.shape[-1:])
    out = FUNCTIONS[setting.activation](z)
    skip = setting.residual and x.shape == out.shape  # a skip needs the width kept
    return (x + out if skip else out), z


def modules(setting: ChainSetting, n_in: int, n_out: int) -> list[nn.Module]:
    """The same layers as modules with the same weights: ``Linear, [norm], act`` in a
    ``Sequential`` (a ``Residual`` where a skip applies), the last a bare ``Linear``."""
    made: list[nn.Module] = []
    params = weights(setting, n_in, n_out)
    for i, (weight, bias) in enumerate(params):
        # skip_init: nn.Linear would draw weights of its own from the global RNG.
        linear = nn.utils.skip_init(nn.Linear, weight.shape[1], weight.shape[0])
        with torch.no_grad():
            linear.weight.copy_(weight)
            linear.bias.copy_(bias)
        if i == len(params) - 1:
            made.append(linear)
            continue
        norm = NORMS[setting.norm]
        parts = [linear, *([norm(len(bias))] if norm else []), ACTIVATIONS[setting.activation]()]
        skip = setting.residual and weight.shape[0] == weight.shape[1]
        made.append(Residual(*parts) if skip else nn.Sequential(*parts))
    return made


def _init(
    n_in: int, n_out: int, setting: ChainSetting, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    weight, bias = torch.empty(n_out, n_in), torch.zeros(n_out)
    if setting.init == "default":  # what nn.Linear.reset_parameters does, seeded
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=generator)
        bound = 1 / math.sqrt(n_in)
        nn.init.uniform_(bias, -bound, bound, generator=generator)
    elif setting.init == "he":
        nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=generator)
    else:
        nn.init.xavier_uniform_(weight, generator=generator)
    return weight.mul_(setting.weight_scale), bias


def sentence(setting: ChainSetting, norms: np.ndarray, below_float32: bool = False) -> str:
    """E.g. "30 sigmoid layers: the first layer receives 1e-12 of the last layer's gradient;
    each layer multiplies it by about 0.39"; ``below_float32``: the first layer's gradient
    would round to zero in float32 training (the profile is measured in float64)."""
    layers = "1 layer" if setting.depth == 1 else f"{setting.depth} {setting.activation} layers"
    extras = [
        *(["residual connections"] if setting.residual and setting.depth > 2 else []),
        *([setting.norm] if setting.norm != "none" and setting.depth > 1 else []),
    ]
    head = layers + (f" with {' and '.join(extras)}" if extras else "")
    if setting.depth == 1:
        return f"{head}: there is no chain, the gradient reaches the only layer directly"
    first, last = float(norms[0]), float(norms[-1])
    if not (math.isfinite(first) and math.isfinite(last)) or last == 0:
        return f"{head}: the gradient overflows on its way down (not a finite number)"
    if first == 0:
        return f"{head}: the first layer receives no gradient at all (every unit on the way is off)"
    ratio = first / last
    per_layer = ratio ** (1 / (setting.depth - 1))
    share = f"{number(ratio)} of" if ratio < 1 else f"{number(ratio)} times"
    words = (
        f"{head}: the first layer receives {share} the last layer's gradient; "
        f"each layer multiplies it by about {number(per_layer)}"
    )
    return words + (" (too small for float32: training would lose it)" if below_float32 else "")


def number(x: float) -> str:
    """``0.2``, ``1.5``, ``1e-12``, ``3e5``: two digits near 1, else a power of ten."""
    if 0.01 <= x < 100:
        return f"{x:.2g}"
    mantissa, exponent = f"{x:.0e}".split("e")
    return f"{mantissa}e{int(exponent)}"
