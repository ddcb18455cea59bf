"""Swap activations for a target (ReLU, LeakyReLU, GELU): module slots, and calls via torch.fx."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import fx, nn

from ..errors import RemedyNotApplicable
from ._fx import trace
from ._plan import REPLACE_LOOP, Change, Plan, counted, listed, names_code
from ._residual import Residual
from ._tree import has_params, is_torch_object, own_modules, set_module, slots

# ReLU6 subclasses Hardtanh but is already a ReLU, so saturating types are matched exactly.
_SATURATING = (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Softsign, nn.LogSigmoid)
_SATURATING_FUNCTIONS = {torch.sigmoid, torch.tanh, torch.special.expit, F.logsigmoid}
_SATURATING_FUNCTIONS |= {F.hardtanh, F.hardsigmoid, F.softsign}
_SATURATING_INPLACE = {torch.sigmoid_, torch.tanh_, F.hardtanh_}
_SATURATING_METHODS = {"sigmoid", "tanh", "sigmoid_", "tanh_"}
# A ReLU is what LeakyReLU and GELU replace too: the cure for units that died at 0.
_RELU_FUNCTIONS, _RELU_INPLACE = {torch.relu, F.relu}, {torch.relu_, F.relu_}
_RELU_METHODS = {"relu", "relu_"}


def _gelu_(x: torch.Tensor) -> torch.Tensor:
    """GELU in place: torch has no ``gelu_``, and a rewritten in-place call must stay one."""
    return x.copy_(F.gelu(x))


@dataclass(frozen=True)
class ActivationTarget:
    """What the swap puts in: a module, the same as a call, in place, and as pasted code."""

    label: str  # the module's class name, for summaries
    module: Callable[[], nn.Module]
    function: Callable[[torch.Tensor], torch.Tensor]
    inplace: Callable[[torch.Tensor], torch.Tensor]
    code: str  # the module, as pasted code
    call: str  # the function, as pasted code
    replaces_relu: bool  # LeakyReLU and GELU replace ReLU too; ReLU replaces saturating only

    def sources(self, module: nn.Module) -> bool:
        """Whether ``module`` is an activation this target replaces."""
        return type(module) in _SATURATING or (self.replaces_relu and type(module) is nn.ReLU)


TARGETS: dict[str, ActivationTarget] = {
    "relu": ActivationTarget(
        "ReLU", nn.ReLU, torch.relu, torch.relu_, "nn.ReLU()", "torch.relu", False
    ),
    "leaky_relu": ActivationTarget(
        "LeakyReLU",
        nn.LeakyReLU,
        F.leaky_relu,
        F.leaky_relu_,
        "nn.LeakyReLU()",
        "F.leaky_relu",
        True,
    ),
    "gelu": ActivationTarget("GELU", nn.GELU, F.gelu, _gelu_, "nn.GELU()", "F.gelu", True),
}


@dataclass(frozen=True)
class _Activations:
    replace: tuple[str, ...]  # module slots, qualified names
    calls: tuple[fx.Node, ...]  # functional calls in the traced graph
    kept: tuple[str, ...]  # labels of output activations left alone


def plan_activation(model: nn.Module, target: str) -> Plan:
    """Plan ``target`` in place of the activations it replaces in ``model`` (a copy)."""
    to = TARGETS[target]
    graph, trace_error = trace(model) if _needs_trace(model) else (None, None)
    found = _activations_in_graph(model, graph, to) if graph else _activations_in_tree(model, to)
    if not (found.replace or found.calls):
        raise RemedyNotApplicable(_nothing_reason(found, trace_error, to))
    modules = [type(model.get_submodule(name)).__name__ for name in found.replace]
    calls = ", ".join(dict.fromkeys(str(_functional_label(node, to)) for node in found.calls))
    parts = [counted(modules)] if modules else []
    n_calls = len(found.calls)
    parts += [f"{n_calls} call{'s' * (n_calls > 1)} in forward ({calls})"] if calls else []
    summary = ", ".join(parts) + f" -> {to.label}"
    if found.kept:
        summary += f"; kept the output {listed(found.kept)} after the last layer"
    if trace_error:
        summary += "; torch.fx could not trace forward, so functional calls were not checked"

    def build() -> nn.Module:
        for name in found.replace:
            set_module(model, name, to.module())
        if not found.calls:
            return model
        for node in found.calls:
            _rewrite(node, to)
        return fx.GraphModule(model, graph, class_name=type(model).__name__)

    return Plan(Change(target, summary, _code(found.replace, calls, to)), build)


def _needs_trace(model: nn.Module) -> bool:
    """Only custom forwards can hold functional activations; torch's modules are fx leaves."""
    return any(not is_torch_object(module) for module in model.modules())


def _functional_label(node: fx.Node, to: ActivationTarget) -> str | None:
    """ "sigmoid()" for a call in the graph that ``to`` replaces, else None."""
    methods = _SATURATING_METHODS | (_RELU_METHODS if to.replaces_relu else set())
    if node.op == "call_method" and node.target in methods:
        return f".{node.target}()"
    functions = _SATURATING_FUNCTIONS | _SATURATING_INPLACE
    functions |= (_RELU_FUNCTIONS | _RELU_INPLACE) if to.replaces_relu else set()
    if node.op == "call_function" and node.target in functions:
        return f"{node.target.__name__}()"
    return None


def _rewrite(node: fx.Node, to: ActivationTarget) -> None:
    first = node.args[0] if node.args else node.kwargs["input"]
    target = node.target
    inplace = target in _SATURATING_INPLACE | _RELU_INPLACE or node.kwargs.get("inplace", False)
    inplace = inplace or (node.op == "call_method" and str(target).endswith("_"))
    node.op, node.target = "call_function", to.inplace if inplace else to.function
    node.args, node.kwargs = (first,), {}


def _source_label(model: nn.Module, node: fx.Node, to: ActivationTarget) -> str | None:
    if node.op != "call_module":
        return _functional_label(node, to)
    module = model.get_submodule(str(node.target))
    return type(module).__name__ if to.sources(module) else None


def _uses_parameters(model: nn.Module, node: fx.Node) -> bool:
    if node.op == "call_module":
        return has_params(model.get_submodule(str(node.target)))
    return node.op == "get_attr"


def _slots_of(model: nn.Module, modules: Iterable[nn.Module]) -> tuple[str, ...]:
    """Every slot holding one of ``modules``: a shared activation is swapped everywhere."""
    wanted = {id(module) for module in modules}
    return tuple(name for name, module in own_modules(model) if id(module) in wanted)


def _activations_in_graph(model: nn.Module, graph: fx.Graph, to: ActivationTarget) -> _Activations:
    """Activations and calls in execution order; those after the last layer are kept."""
    nodes = list(graph.nodes)
    last_layer = max(
        (i for i, node in enumerate(nodes) if _uses_parameters(model, node)), default=-1
    )
    found = [(i, node) for i, node in enumerate(nodes) if _source_label(model, node, to)]
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
        tuple(str(_source_label(model, node, to)) for node in kept),
    )


def _activations_in_tree(model: nn.Module, to: ActivationTarget) -> _Activations:
    """Activation modules by slot; in a Sequential, those after its last layer are kept."""
    kept = set(_sequential_tail(model))
    sources = [name for name, module in own_modules(model) if to.sources(module)]
    labels = [type(model.get_submodule(name)).__name__ for name in sources if name in kept]
    return _Activations(tuple(name for name in sources if name not in kept), (), tuple(labels))


def _sequential_tail(module: nn.Module, prefix: str = "") -> Iterator[str]:
    """Slots after the last parameter layer of a Sequential, following nested Sequentials."""
    # A Residual block's activation is inside x + f(x), never an output squashing.
    if not isinstance(module, nn.Sequential) or isinstance(module, Residual):
        return
    for name, child in reversed(slots(module)):
        if has_params(child):
            yield from _sequential_tail(child, f"{prefix}{name}.")
            return
        yield prefix + name
        yield from (f"{prefix}{name}.{sub}" for sub, _ in child.named_modules() if sub)


def _code(slot_names: tuple[str, ...], calls: str, to: ActivationTarget) -> str:
    code = ""
    if slot_names:
        code = "import torch.nn as nn\n\nfor name in " + names_code(slot_names) + ":\n"
        code += REPLACE_LOOP.format(new=to.code)
    if calls:
        code += f"# in forward(), call {to.call} instead of {calls}\n"
    return code


def _nothing_reason(found: _Activations, trace_error: str | None, to: ActivationTarget) -> str:
    relu = " or ReLU" if to.replaces_relu else ""
    if trace_error:
        return (
            f"This model has no saturating activation{relu} modules to replace by {to.label}, "
            "and torch.fx could not trace its forward to look for functional ones such as "
            f"torch.sigmoid ({trace_error}). Use nn.Sigmoid / nn.Tanh modules in the model, or "
            f"edit forward to call {to.call}."
        )
    reason = f"This model already uses no saturating activations{relu} (Sigmoid, Tanh, ...)"
    if found.kept:
        reason += f" before its output; the output {listed(found.kept)} is kept on purpose"
    return reason + f", so there is nothing to replace by {to.label}."
