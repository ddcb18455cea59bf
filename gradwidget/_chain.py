"""The parts of the explorer's stacks: layers, their initialisation, activation derivatives,
and the profile in words. Private to :mod:`gradwidget.explorer`."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
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


def make_blocks(setting: ChainSetting, n_in: int, n_out: int) -> list[nn.Module]:
    """One module per layer: ``Sequential(Linear, [norm], act)`` (a ``Residual`` where on and
    the width is kept), the last a bare ``Linear``; weights drawn from ``setting.seed``."""
    generator = torch.Generator().manual_seed(setting.seed)
    sizes = [n_in] + [setting.width] * (setting.depth - 1) + [n_out]
    blocks: list[nn.Module] = []
    for i in range(setting.depth):
        linear = _linear(sizes[i], sizes[i + 1], setting, generator)
        if i == setting.depth - 1:
            blocks.append(linear)
            continue
        norm = NORMS[setting.norm]
        parts = [linear, *([norm(sizes[i + 1])] if norm else []), ACTIVATIONS[setting.activation]()]
        skip = setting.residual and sizes[i] == sizes[i + 1]  # a skip needs the width kept
        blocks.append(Residual(*parts) if skip else nn.Sequential(*parts))
    return blocks


def forward(block: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``block(x)`` and the pre-activations ``z`` of its activation (``None`` for the logits)."""
    if not isinstance(block, nn.Sequential):
        return block(x), None
    *inner, act = block
    z = x
    for module in inner:
        z = module(z)
    out = act(z)
    return (x + out if isinstance(block, Residual) else out), z


def _linear(n_in: int, n_out: int, setting: ChainSetting, generator: torch.Generator) -> nn.Linear:
    # skip_init: no draw from the global RNG, so the caller's random state is left alone.
    layer = nn.utils.skip_init(nn.Linear, n_in, n_out)
    with torch.no_grad():
        if setting.init == "default":  # what nn.Linear.reset_parameters does, seeded
            nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
            bound = 1 / math.sqrt(n_in)
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        else:
            if setting.init == "he":
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
            else:
                nn.init.xavier_uniform_(layer.weight, generator=generator)
            nn.init.zeros_(layer.bias)
        layer.weight.mul_(setting.weight_scale)
    return layer


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
