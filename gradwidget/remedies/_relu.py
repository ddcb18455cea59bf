"""Saturating activations -> ReLU: module slots in the tree, functional calls via torch.fx."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import RemedyNotApplicable
from ._batchnorm import FeatureBatchNorm1d
from ._plan import REPLACE_LOOP, Change, Plan, counted, listed, names_code
from ._tree import has_params, is_torch_object, own_modules, set_module, slots

# ReLU6 subclasses Hardtanh but is already a ReLU, so saturating types are matched exactly.
_SATURATING = (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Softsign, nn.LogSigmoid)
_SATURATING_FUNCTIONS = {torch.sigmoid, torch.tanh, torch.special.expit, F.logsigmoid}
_SATURATING_FUNCTIONS |= {F.hardtanh, F.hardsigmoid, F.softsign}
_INPLACE_FUNCTIONS = {torch.sigmoid_, torch.tanh_, F.hardtanh_}
_RELU_METHODS = {"sigmoid": "relu", "tanh": "relu", "sigmoid_": "relu_", "tanh_": "relu_"}


@dataclass(frozen=True)
class _Activations:
    replace: tuple[str, ...]  # module slots, qualified names
    calls: tuple[fx.Node, ...]  # functional calls in the traced graph
    kept: tuple[str, ...]  # labels of output activations left alone


class _ThreadLocalTracer(fx.Tracer):
    """fx.Tracer that lets other threads (a training run) call modules while it traces."""

    def __init__(self) -> None:
        super().__init__()
        # fx patches nn.Module.__call__/__getattr__ for the whole process while it traces.
        self._thread = threading.get_ident()

    def call_module(self, m: nn.Module, forward: Callable, args: Any, kwargs: Any) -> Any:
        if threading.get_ident() != self._thread:
            return forward(*args, **kwargs)
        return super().call_module(m, forward, args, kwargs)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict) -> Any:
        if threading.get_ident() != self._thread:
            return attr_val
        return super().getattr(attr, attr_val, parameter_proxy_cache)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        leaf = super().is_leaf_module(m, module_qualified_name)
        return leaf or isinstance(m, FeatureBatchNorm1d)


def plan_relu(model: nn.Module) -> Plan:
    """Plan ReLU in place of saturating activations of ``model`` (a copy, changed by ``build``)."""
    graph, trace_error = _trace(model) if _needs_trace(model) else (None, None)
    found = _activations_in_graph(model, graph) if graph else _activations_in_tree(model)
    if not (found.replace or found.calls):
        raise RemedyNotApplicable(_no_relu_reason(found, trace_error))
    modules = [type(model.get_submodule(name)).__name__ for name in found.replace]
    calls = ", ".join(dict.fromkeys(str(_functional_label(node)) for node in found.calls))
    parts = [counted(modules)] if modules else []
    n_calls = len(found.calls)
    parts += [f"{n_calls} call{'s' * (n_calls > 1)} in forward ({calls})"] if calls else []
    summary = ", ".join(parts) + " -> ReLU"
    if found.kept:
        summary += f"; kept the output {listed(found.kept)} after the last layer"
    if trace_error:
        summary += "; torch.fx could not trace forward, so functional calls were not checked"
    code = _relu_code(found.replace, calls)

    def build() -> nn.Module:
        for name in found.replace:
            set_module(model, name, nn.ReLU())
        if not found.calls:
            return model
        for node in found.calls:
            _rewrite_to_relu(node)
        return fx.GraphModule(model, graph, class_name=type(model).__name__)

    return Plan(Change("relu", summary, code), build)


def _is_saturating(module: nn.Module) -> bool:
    return type(module) in _SATURATING


def _needs_trace(model: nn.Module) -> bool:
    """Only custom forwards can hold functional activations; torch's modules are fx leaves."""
    return any(not is_torch_object(module) for module in model.modules())


def _trace(model: nn.Module) -> tuple[fx.Graph | None, str | None]:
    try:
        graph = _ThreadLocalTracer().trace(model)
    except Exception as error:  # any failure means: forward cannot be read symbolically
        return None, str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
    for node in graph.nodes:
        # String annotations (from __future__ import annotations) would end up as str
        # globals of the generated code, which fx then fails to pickle.
        node.type = None
    return graph, None


def _functional_label(node: fx.Node) -> str | None:
    """ "sigmoid()" for a saturating call in the graph, else None."""
    if node.op == "call_method" and node.target in _RELU_METHODS:
        return f".{node.target}()"
    saturating = _SATURATING_FUNCTIONS | _INPLACE_FUNCTIONS
    if node.op == "call_function" and node.target in saturating:
        return f"{node.target.__name__}()"
    return None


def _rewrite_to_relu(node: fx.Node) -> None:
    first = node.args[0] if node.args else node.kwargs["input"]
    if node.op == "call_method":
        node.target = _RELU_METHODS[str(node.target)]
    else:
        inplace = node.target in _INPLACE_FUNCTIONS or node.kwargs.get("inplace", False)
        node.target = torch.relu_ if inplace else torch.relu
    node.args, node.kwargs = (first,), {}


def _saturating_label(model: nn.Module, node: fx.Node) -> str | None:
    if node.op != "call_module":
        return _functional_label(node)
    module = model.get_submodule(str(node.target))
    return type(module).__name__ if _is_saturating(module) else None


def _uses_parameters(model: nn.Module, node: fx.Node) -> bool:
    if node.op == "call_module":
        return has_params(model.get_submodule(str(node.target)))
    return node.op == "get_attr"


def _slots_of(model: nn.Module, modules: Iterable[nn.Module]) -> tuple[str, ...]:
    """Every slot holding one of ``modules``: a shared activation is swapped everywhere."""
    wanted = {id(module) for module in modules}
    return tuple(name for name, module in own_modules(model) if id(module) in wanted)


def _activations_in_graph(model: nn.Module, graph: fx.Graph) -> _Activations:
    """Saturating modules and calls in execution order; those after the last layer are kept."""
    nodes = list(graph.nodes)
    last_layer = max(
        (i for i, node in enumerate(nodes) if _uses_parameters(model, node)), default=-1
    )
    found = [(i, node) for i, node in enumerate(nodes) if _saturating_label(model, node)]
    hidden = [node for i, node in found if i < last_layer]
    replaced = {str(node.target) for node in hidden if node.op == "call_module"}
    # A module also called before the last layer is swapped, so it is not "kept".
    kept = [
        node
        for i, node in found
        if i > last_layer and not (node.op == "call_module" and node.target in replaced)
    ]
    return _Activations(
        _slots_of(model, [model.get_submodule(name) for name in replaced]),
        tuple(node for node in hidden if node.op != "call_module"),
        tuple(str(_saturating_label(model, node)) for node in kept),
    )


def _activations_in_tree(model: nn.Module) -> _Activations:
    """Saturating modules by slot; in a Sequential, those after its last layer are kept."""
    kept = set(_sequential_tail(model))
    saturating = [name for name, module in own_modules(model) if _is_saturating(module)]
    labels = [type(model.get_submodule(name)).__name__ for name in saturating if name in kept]
    return _Activations(tuple(name for name in saturating if name not in kept), (), tuple(labels))


def _sequential_tail(module: nn.Module, prefix: str = "") -> Iterator[str]:
    """Slots after the last parameter layer of a Sequential, following nested Sequentials."""
    if not isinstance(module, nn.Sequential):
        return
    for name, child in reversed(slots(module)):
        if has_params(child):
            yield from _sequential_tail(child, f"{prefix}{name}.")
            return
        yield prefix + name
        yield from (f"{prefix}{name}.{sub}" for sub, _ in child.named_modules() if sub)


def _relu_code(slot_names: tuple[str, ...], calls: str) -> str:
    code = ""
    if slot_names:
        code = "import torch.nn as nn\n\nfor name in " + names_code(slot_names) + ":\n"
        code += REPLACE_LOOP.format(new="nn.ReLU()")
    if calls:
        code += f"# in forward(), call torch.relu instead of {calls}\n"
    return code


def _no_relu_reason(found: _Activations, trace_error: str | None) -> str:
    if trace_error:
        return (
            "This model has no saturating activation modules, and torch.fx could not trace its "
            f"forward to look for functional ones such as torch.sigmoid ({trace_error}). Use "
            "nn.Sigmoid / nn.Tanh modules in the model, or edit forward to call torch.relu."
        )
    reason = "This model already uses no saturating activations (Sigmoid, Tanh, ...)"
    if found.kept:
        reason += f" before its output; the output {listed(found.kept)} is kept on purpose"
    return reason + ", so there is nothing to replace by ReLU."
