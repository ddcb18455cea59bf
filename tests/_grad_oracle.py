"""torch as the oracle for the trainer callbacks: per-layer gradient norms read at a hook.

A *layer* is a module owning parameters directly (a tied weight counts once, at its first
owner), as the recorder defines it; its norm is the L2 norm of all its parameters' gradients,
computed here with ``torch.linalg.vector_norm`` on each ``p.grad``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


def own_layers(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    seen: set[int] = set()
    layers = {}
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            layers[name or type(module).__name__] = own
    return layers


def layer_norms(layers: dict[str, list[nn.Parameter]], names: tuple[str, ...]) -> np.ndarray:
    """Each named layer's gradient norm now (NaN: no gradient)."""
    row = []
    for name in names:
        grads = [p.grad.detach().float() for p in layers[name] if p.grad is not None]
        if not grads:
            row.append(np.nan)
            continue
        each = torch.stack([torch.linalg.vector_norm(g) for g in grads])
        row.append(torch.linalg.vector_norm(each).item())
    return np.array(row)


class ForwardOrder:
    """Names of the parameter-owning modules in the order of their first forward call."""

    def __init__(self, model: nn.Module) -> None:
        self.order: list[str] = []
        modules = dict(model.named_modules())
        self._handles = [
            modules[name].register_forward_pre_hook(self._seen(name))
            for name in own_layers(model)
            if name in modules
        ]

    def _seen(self, name: str):
        def hook(module: nn.Module, args: object) -> None:
            if name not in self.order:
                self.order.append(name)

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
