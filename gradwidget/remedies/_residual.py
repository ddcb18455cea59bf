"""Skip connections ``x + f(x)`` around hidden blocks that keep their input's shape."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import RemedyNotApplicable
from ._plan import REPLACE_LOOP, Change, Plan, counted, names_code
from ._shapes import Chain, chain_of, plain_sequential
from ._tree import LAYER_TYPES, is_torch_composite, is_torch_object, own_modules, set_module, slots

_RESIDUAL_CODE = """import torch.nn as nn


class Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)

"""


class Residual(nn.Sequential):
    """``x + f(x)``, where ``f`` runs the modules it holds in order: a skip connection.

    The gradient reaches ``x`` through the identity path undiminished, however small the
    derivative of ``f``: the cure for vanishing gradients in deep stacks (He et al., 2016).
    """

    # Pickles name the class by its public path, which stays put when private modules move.
    __module__ = "gradwidget.remedies"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)


@dataclass(frozen=True)
class _Span:
    """Modules ``[first, end)`` of the Sequential ``container`` form one block."""

    container: str
    first: int
    end: int


def plan_residual(model: nn.Module) -> Plan:
    """Plan a skip connection around each shape-keeping hidden block of ``model`` (a copy)."""
    layers = [m for _, m in own_modules(model) if isinstance(m, LAYER_TYPES)]
    output = layers[-1] if layers else None
    found = list(_blocks(model, "", output))
    if not found:
        raise RemedyNotApplicable(_no_block_reason(model))
    spans = [b for b in found if isinstance(b, _Span)]
    wrapped = [b for b in found if isinstance(b, str)]
    kinds = [_describe(model, b) for b in found]
    summary = f"x + f(x) around {counted(kinds, ' block')}"

    def build() -> nn.Module:
        for span in reversed(spans):  # the last first: deleting keeps earlier indices valid
            seq = model.get_submodule(span.container)
            seq[span.first] = Residual(*seq[span.first : span.end])
            del seq[span.first + 1 : span.end]
        for name in wrapped:
            set_module(model, name, Residual(model.get_submodule(name)))
        return model

    return Plan(Change("residual", summary, _code(spans, wrapped)), build)


def _block(module: nn.Module | None, output: nn.Module | None) -> Chain | None:
    """The chain of a candidate block's first module: it must hold a layer, not the output."""
    chain = chain_of(module)
    if chain is None or not chain.layers or any(m is output for m in module.modules()):
        return None
    return chain


def _blocks(module: nn.Module, prefix: str, output: nn.Module | None) -> Iterator[_Span | str]:
    """Blocks to wrap: spans of plain Sequentials, or whole custom modules (their slot name)."""
    if plain_sequential(module):
        yield from _sequential_blocks(module, prefix, output)
        return
    for name, child in slots(module):
        if isinstance(child, Residual) or is_torch_composite(child):
            continue
        chain = None if is_torch_object(child) else _block(child, output)
        if chain is not None and chain.activations:
            yield prefix + name
        else:
            yield from _blocks(child, f"{prefix}{name}.", output)


def _sequential_blocks(seq: nn.Sequential, prefix: str, output: nn.Module | None) -> Iterator:
    """A layer-holding module and the parameter-free shape-keeping modules after it."""
    children = list(seq._modules.items())
    i = 0
    while i < len(children):
        chain, end = _block(children[i][1], output), i + 1
        while chain is not None and end < len(children):
            step = chain_of(children[end][1])
            if step is None or step.layers:
                break
            chain, end = chain + step, end + 1
        if chain is not None and chain.activations:
            yield _Span(prefix.rstrip("."), i, end)
            i = end
            continue
        name, child = children[i]
        if child is not None and not isinstance(child, Residual):
            yield from _blocks(child, f"{prefix}{name}.", output)
        i += 1


def _describe(model: nn.Module, block: _Span | str) -> str:
    """ "Linear+Sigmoid" for a span, the class name for a wrapped custom module."""
    if isinstance(block, str):
        return type(model.get_submodule(block)).__name__
    seq = model.get_submodule(block.container)
    members = [seq[i] for i in range(block.first, block.end)]
    leaves = [m for member in members for m in member.modules() if not m._modules]
    return "+".join(type(m).__name__ for m in leaves)


def _code(spans: list[_Span], wrapped: list[str]) -> str:
    code = _RESIDUAL_CODE
    if spans:
        # Non-breaking spaces keep each tuple on one line when the list is wrapped.
        listed = " ".join(f'("{s.container}",\xa0{s.first},\xa0{s.end}),' for s in spans)
        lines = textwrap.wrap(listed, 88, initial_indent="    ", subsequent_indent="    ")
        code += (
            "\n# (Sequential, first, end): its modules [first, end) become one block\n"
            + "blocks = [\n"
            + "\n".join(lines).replace("\xa0", " ")
            + "\n]\n"
            "for name, first, end in reversed(blocks):  # the last first: indices stay valid\n"
            "    seq = model.get_submodule(name)\n"
            "    seq[first] = Residual(*seq[first:end])\n"
            "    del seq[first + 1 : end]\n"
        )
    if wrapped:
        code += "\nfor name in " + names_code(wrapped) + ":\n"
        code += REPLACE_LOOP.format(new="Residual(model.get_submodule(name))")
    return code


def _no_block_reason(model: nn.Module) -> str:
    if any(isinstance(m, Residual) for m in model.modules()):
        return (
            "This model already has skip connections around its shape-keeping blocks, and no "
            "other hidden block keeps its input's shape."
        )
    return (
        "This model has no hidden block whose output has its input's shape (a Linear with as "
        "many outputs as inputs, or a stride-1 Conv that keeps its channels and size, followed "
        "by its activation), so x + f(x) cannot be added without a projection. Give the hidden "
        "layers one width, or add projection shortcuts yourself."
    )
