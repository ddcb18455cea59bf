"""Module trees: copying without hooks, walking our own slots, replacing a slot."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from torch import nn

LAYER_TYPES = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
_CALL_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def copy_without_hooks(model: nn.Module) -> nn.Module:
    """Deep copy that drops call hooks not owned by torch (a Recorder's closures, yours)."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        for attr in _CALL_HOOKS:
            hooks = getattr(module, attr, None)
            if hooks:
                # Pre-filling the memo makes deepcopy use this filtered dict for the original.
                kept = {key: hook for key, hook in hooks.items() if is_torch_object(hook)}
                memo[id(hooks)] = type(hooks)(copy.deepcopy(kept, memo))
    return copy.deepcopy(model, memo)


def is_torch_object(obj: object) -> bool:
    """Whether ``obj``'s class comes from torch itself."""
    return type(obj).__module__.startswith("torch.")


def is_torch_composite(module: nn.Module) -> bool:
    """A torch module that reads its children's weights directly (LSTM, attention, ...)."""
    return is_torch_object(module) and not isinstance(module, _CONTAINERS)


def slots(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, child) for every filled slot of ``module``."""
    # named_children() lists a module shared by two slots once; every slot must be seen.
    return [(name, child) for name, child in module._modules.items() if child is not None]


def own_modules(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """(qualified name, module) in registration order, not entering torch's composites."""
    for name, child in slots(module):
        yield prefix + name, child
        if not is_torch_composite(child):
            yield from own_modules(child, f"{prefix}{name}.")


def has_params(module: nn.Module) -> bool:
    """Whether ``module`` or any of its children holds a parameter."""
    return next(module.parameters(), None) is not None


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    """Put ``new`` in the slot with qualified name ``name``."""
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def kind(layer: nn.Module) -> str:
    """The public layer class, e.g. "Linear" for MultiheadAttention's out_proj."""
    return next(cls.__name__ for cls in LAYER_TYPES if isinstance(layer, cls))
