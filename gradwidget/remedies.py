"""One-click remedies for vanishing gradients: ``nn.Module -> new nn.Module``.

Every remedy works on a deep copy: the model passed in, its parameters and its hooks are never
changed. Forward/backward hooks (a Recorder's, or yours) are not carried into the copy, so the
copy can be recorded on its own; torch's own hook objects (old-style weight/spectral norm) are.

Layers inside torch's own composite modules (``nn.LSTM``, ``nn.MultiheadAttention``,
``nn.TransformerEncoderLayer`` ...) are left alone: torch reads their weights directly, so
wrapping or swapping them would break those modules or be bypassed by their fast paths.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from .errors import RemedyNotApplicable

__all__ = [
    "LABELS",
    "REMEDY_NAMES",
    "Change",
    "FeatureBatchNorm1d",
    "add_batchnorm",
    "apply_remedies",
    "check",
    "he_init",
    "use_relu",
]

REMEDY_NAMES: tuple[str, ...] = ("relu", "he_init", "batchnorm")
LABELS: dict[str, str] = {"relu": "ReLU", "he_init": "He init", "batchnorm": "BatchNorm"}
# Activations first (BatchNorm wraps layers, then He init sees the final layer set).
_CANONICAL_ORDER = ("relu", "batchnorm", "he_init")

# ReLU6 subclasses Hardtanh but is already a ReLU, so saturating types are matched exactly.
_SATURATING = (nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid, nn.Softsign, nn.LogSigmoid)
_SATURATING_FUNCTIONS = {torch.sigmoid, torch.tanh, torch.special.expit, F.logsigmoid}
_SATURATING_FUNCTIONS |= {F.hardtanh, F.hardsigmoid, F.softsign}
_INPLACE_FUNCTIONS = {torch.sigmoid_, torch.tanh_, F.hardtanh_}
_RELU_METHODS = {"sigmoid": "relu", "tanh": "relu", "sigmoid_": "relu_", "tanh_": "relu_"}
_LAYER_TYPES = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)
# The common base of BatchNorm1d/2d/3d, SyncBatchNorm and the lazy ones.
_BatchNorm = nn.modules.batchnorm._BatchNorm
_BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_CALL_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_REPLACE_LOOP = """    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, {new})
"""


@dataclass(frozen=True)
class Change:
    """What a remedy would do to a model, before it is applied.

    Attributes
    ----------
    name : str
        The remedy, one of ``REMEDY_NAMES``.
    summary : str
        One line for users, e.g. ``"9 Sigmoid -> ReLU"``.
    code : str
        The same change as plain PyTorch, to paste into one's own code (``model`` is the model).
    """

    name: str
    summary: str
    code: str


@dataclass(frozen=True)
class _Plan:
    change: Change
    build: Callable[[], nn.Module]  # mutates the planned copy and returns the remedied model


class FeatureBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d over the last dimension: follows a Linear on (N, F) and (N, T, F) inputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # nn.BatchNorm1d normalises dim 1, which is time, not features, for (N, T, F).
        return super().forward(x.reshape(-1, x.shape[-1])).reshape(x.shape)


def use_relu(model: nn.Module) -> nn.Module:
    """Replace saturating activations (Sigmoid, Tanh, Hardtanh, ...) by ReLU in a copy.

    Activation modules are swapped anywhere in the tree. Functional calls in ``forward``
    (``torch.sigmoid``, ``F.tanh``, ``x.sigmoid()``, ...) are rewritten when ``torch.fx`` can
    trace the model; then the result is an ``fx.GraphModule`` (it keeps the submodules and
    their names, not the model's other methods, and Python branches are fixed as traced).
    An activation after the last parameter layer (e.g. a final Sigmoid for BCE) is kept.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is not changed.

    Returns
    -------
    torch.nn.Module
        A new model with the same weights.

    Raises
    ------
    RemedyNotApplicable
        Nothing to replace, or only functional calls that torch.fx cannot trace.
    """
    return _plan_relu(_copy_without_hooks(model)).build()


def he_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """Kaiming-normal weights (fan_in, ReLU gain) on every Linear/Conv, zero biases, in a copy.

    The output layer is re-initialised too, to keep the rule simple. Weights are drawn on the
    CPU from a ``torch.Generator`` seeded with ``seed`` (the global RNG is untouched), so a seed
    gives the same weights on every device.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is not changed.
    seed : int
        Seed of the generator.

    Returns
    -------
    torch.nn.Module
        A new model.

    Raises
    ------
    RemedyNotApplicable
        The model has no Linear or Conv layer.
    """
    return _plan_he_init(_copy_without_hooks(model), seed).build()


def add_batchnorm(model: nn.Module) -> nn.Module:
    """Put a BatchNorm after each Linear/Conv except the output layer, in a copy.

    Each such layer ``m`` becomes ``nn.Sequential(m, bn)`` in its parent (so ``"3"`` becomes
    ``"3.0"`` and ``"3.1"``), which places the norm before the activation that follows and
    works in any module tree. Conv layers get BatchNorm1d/2d/3d; Linear layers get
    :class:`FeatureBatchNorm1d`. The output layer is the last Linear/Conv registered.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is not changed.

    Returns
    -------
    torch.nn.Module
        A new model with the same layer weights.

    Raises
    ------
    RemedyNotApplicable
        The model already has BatchNorm, or has no hidden Linear/Conv layer.
    """
    return _plan_batchnorm(_copy_without_hooks(model)).build()


def check(model: nn.Module, name: str) -> Change:
    """Describe what remedy ``name`` would change, without touching ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    name : str
        One of ``REMEDY_NAMES``.

    Returns
    -------
    Change
        Summary and equivalent plain-PyTorch code.

    Raises
    ------
    RemedyNotApplicable
        Exactly when applying the remedy would raise it.
    ValueError
        ``name`` is not a remedy.
    """
    return _plan(_known(name), _copy_without_hooks(model), seed=0).change


def apply_remedies(model: nn.Module, names: Iterable[str], seed: int = 0) -> nn.Module:
    """Apply several remedies in the order relu -> batchnorm -> he_init, on a copy.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is not changed.
    names : iterable of str
        Remedies from ``REMEDY_NAMES``, in any order; duplicates are ignored. Empty gives an
        unchanged copy.
    seed : int
        Seed for ``he_init``.

    Returns
    -------
    torch.nn.Module
        The remedied copy.

    Raises
    ------
    ValueError
        An unknown name.
    RemedyNotApplicable
        One of the remedies does not apply to the model (after the earlier ones).
    """
    chosen = {_known(name) for name in ([names] if isinstance(names, str) else names)}
    result = _copy_without_hooks(model)
    for name in _CANONICAL_ORDER:
        if name in chosen:
            result = _plan(name, _copy_without_hooks(result), seed).build()
    return result


def _known(name: str) -> str:
    if name not in REMEDY_NAMES:
        raise ValueError(f"Unknown remedy {name!r}; choose from {', '.join(REMEDY_NAMES)}.")
    return name


def _plan(name: str, model: nn.Module, seed: int) -> _Plan:
    if name == "he_init":
        return _plan_he_init(model, seed)
    return _plan_relu(model) if name == "relu" else _plan_batchnorm(model)


# -- copies and module trees --------------------------------------------------------------------


def _copy_without_hooks(model: nn.Module) -> nn.Module:
    """Deep copy that drops call hooks not owned by torch (a Recorder's closures, yours)."""
    memo: dict[int, Any] = {}
    for module in model.modules():
        for attr in _CALL_HOOKS:
            hooks = getattr(module, attr, None)
            if hooks:
                # Pre-filling the memo makes deepcopy use this filtered dict for the original.
                kept = {key: hook for key, hook in hooks.items() if _is_torch_object(hook)}
                memo[id(hooks)] = type(hooks)(copy.deepcopy(kept, memo))
    return copy.deepcopy(model, memo)


def _is_torch_object(obj: object) -> bool:
    return type(obj).__module__.startswith("torch.")


def _is_torch_composite(module: nn.Module) -> bool:
    return _is_torch_object(module) and not isinstance(module, _CONTAINERS)


def _slots(module: nn.Module) -> list[tuple[str, nn.Module]]:
    # named_children() lists a module shared by two slots once; every slot must be seen.
    return [(name, child) for name, child in module._modules.items() if child is not None]


def _own_modules(module: nn.Module, prefix: str = "") -> Iterator[tuple[str, nn.Module]]:
    """(qualified name, module) in registration order, not entering torch's composites."""
    for name, child in _slots(module):
        yield prefix + name, child
        if not _is_torch_composite(child):
            yield from _own_modules(child, f"{prefix}{name}.")


def _has_params(module: nn.Module) -> bool:
    return next(module.parameters(), None) is not None


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, new)


def _kind(layer: nn.Module) -> str:
    """The public layer class, e.g. "Linear" for MultiheadAttention's out_proj."""
    return next(kind.__name__ for kind in _LAYER_TYPES if isinstance(layer, kind))


def _counted(kinds: Iterable[str], noun: str = "") -> str:
    """ "9 Sigmoid" or "2 Conv2d, 1 Linear layers" (plural noun when more than one)."""
    counts = Counter(kinds)
    plural = "s" if noun and sum(counts.values()) > 1 else ""
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) + noun + plural


def _listed(labels: Iterable[str]) -> str:
    return ", ".join(dict.fromkeys(labels))


def _names_code(names: Iterable[str]) -> str:
    return "[" + ", ".join(f'"{name}"' for name in names) + "]"


# -- use_relu -----------------------------------------------------------------------------------


def _is_saturating(module: nn.Module) -> bool:
    return type(module) in _SATURATING


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


def _needs_trace(model: nn.Module) -> bool:
    """Only custom forwards can hold functional activations; torch's modules are fx leaves."""
    return any(not _is_torch_object(module) for module in model.modules())


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


@dataclass(frozen=True)
class _Activations:
    replace: tuple[str, ...]  # module slots, qualified names
    calls: tuple[fx.Node, ...]  # functional calls in the traced graph
    kept: tuple[str, ...]  # labels of output activations left alone


def _saturating_label(model: nn.Module, node: fx.Node) -> str | None:
    if node.op != "call_module":
        return _functional_label(node)
    module = model.get_submodule(str(node.target))
    return type(module).__name__ if _is_saturating(module) else None


def _uses_parameters(model: nn.Module, node: fx.Node) -> bool:
    if node.op == "call_module":
        return _has_params(model.get_submodule(str(node.target)))
    return node.op == "get_attr"


def _slots_of(model: nn.Module, modules: Iterable[nn.Module]) -> tuple[str, ...]:
    """Every slot holding one of ``modules``: a shared activation is swapped everywhere."""
    wanted = {id(module) for module in modules}
    return tuple(name for name, module in _own_modules(model) if id(module) in wanted)


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
    slots = [name for name, module in _own_modules(model) if _is_saturating(module)]
    labels = [type(model.get_submodule(name)).__name__ for name in slots if name in kept]
    return _Activations(tuple(name for name in slots if name not in kept), (), tuple(labels))


def _sequential_tail(module: nn.Module, prefix: str = "") -> Iterator[str]:
    """Slots after the last parameter layer of a Sequential, following nested Sequentials."""
    if not isinstance(module, nn.Sequential):
        return
    for name, child in reversed(_slots(module)):
        if _has_params(child):
            yield from _sequential_tail(child, f"{prefix}{name}.")
            return
        yield prefix + name
        yield from (f"{prefix}{name}.{sub}" for sub, _ in child.named_modules() if sub)


def _plan_relu(model: nn.Module) -> _Plan:
    graph, trace_error = _trace(model) if _needs_trace(model) else (None, None)
    found = _activations_in_graph(model, graph) if graph else _activations_in_tree(model)
    if not (found.replace or found.calls):
        raise RemedyNotApplicable(_no_relu_reason(found, trace_error))
    modules = [type(model.get_submodule(name)).__name__ for name in found.replace]
    calls = ", ".join(dict.fromkeys(str(_functional_label(node)) for node in found.calls))
    parts = [_counted(modules)] if modules else []
    n_calls = len(found.calls)
    parts += [f"{n_calls} call{'s' * (n_calls > 1)} in forward ({calls})"] if calls else []
    summary = ", ".join(parts) + " -> ReLU"
    if found.kept:
        summary += f"; kept the output {_listed(found.kept)} after the last layer"
    if trace_error:
        summary += "; torch.fx could not trace forward, so functional calls were not checked"
    code = _relu_code(found.replace, calls)

    def build() -> nn.Module:
        for name in found.replace:
            _set_module(model, name, nn.ReLU())
        if not found.calls:
            return model
        for node in found.calls:
            _rewrite_to_relu(node)
        return fx.GraphModule(model, graph, class_name=type(model).__name__)

    return _Plan(Change("relu", summary, code), build)


def _relu_code(slots: tuple[str, ...], calls: str) -> str:
    code = ""
    if slots:
        code = "import torch.nn as nn\n\nfor name in " + _names_code(slots) + ":\n"
        code += _REPLACE_LOOP.format(new="nn.ReLU()")
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
        reason += f" before its output; the output {_listed(found.kept)} is kept on purpose"
    return reason + ", so there is nothing to replace by ReLU."


# -- he_init ------------------------------------------------------------------------------------


def _plan_he_init(model: nn.Module, seed: int) -> _Plan:
    layers = [module for module in model.modules() if isinstance(module, _LAYER_TYPES)]
    if not layers:
        raise RemedyNotApplicable(
            "This model has no Linear or Conv layer, so He initialisation has nothing to set."
        )
    kinds = sorted({_kind(layer) for layer in layers})
    summary = f"He (Kaiming-normal) init on {_counted(map(_kind, layers), ' layer')}"
    code = (
        "import torch\nimport torch.nn as nn\n\n"
        f"generator = torch.Generator().manual_seed({seed})\n"
        "for module in model.modules():\n"
        f"    if isinstance(module, ({''.join(f'nn.{kind}, ' for kind in kinds).strip()})):\n"
        "        nn.init.kaiming_normal_(\n"
        '            module.weight, mode="fan_in", nonlinearity="relu", generator=generator\n'
        "        )\n"
        "        if module.bias is not None:\n"
        "            nn.init.zeros_(module.bias)\n"
    )

    def build() -> nn.Module:
        generator = torch.Generator().manual_seed(seed)
        for layer in layers:
            _kaiming_normal(layer.weight, generator)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        return model

    return _Plan(Change("he_init", summary + ", biases zeroed", code), build)


def _kaiming_normal(weight: torch.Tensor, generator: torch.Generator) -> None:
    # Drawn on the CPU, then copied: a CPU generator cannot fill a CUDA tensor directly.
    fresh = torch.empty(weight.shape)
    nn.init.kaiming_normal_(fresh, mode="fan_in", nonlinearity="relu", generator=generator)
    with torch.no_grad():
        weight.copy_(fresh)


# -- add_batchnorm ------------------------------------------------------------------------------


def _norm_dims(layer: nn.Module) -> int:
    return 1 if isinstance(layer, nn.Linear) else len(layer.kernel_size)


def _features(layer: nn.Module) -> int:
    return layer.out_features if isinstance(layer, nn.Linear) else layer.out_channels


def _norm_for(layer: nn.Module) -> nn.Module:
    dims = _norm_dims(layer)
    norm_type = FeatureBatchNorm1d if isinstance(layer, nn.Linear) else _BATCHNORMS[dims - 1]
    return norm_type(_features(layer)).to(device=layer.weight.device, dtype=layer.weight.dtype)


def _plan_batchnorm(model: nn.Module) -> _Plan:
    present = [name for name, module in model.named_modules() if isinstance(module, _BatchNorm)]
    if present:
        raise RemedyNotApplicable(
            f"This model already has BatchNorm ({', '.join(present[:3])}); adding more would "
            "normalise twice. Train it as it is, or remove those layers first."
        )
    layers = [(name, m) for name, m in _own_modules(model) if isinstance(m, _LAYER_TYPES)]
    hidden = layers[:-1]  # the output layer (last registered) keeps its raw scale
    if not hidden:
        raise RemedyNotApplicable(
            "This model has no hidden Linear or Conv layer to put BatchNorm after (the output "
            "layer gets none, and layers inside torch's own modules are left alone)."
        )
    groups = Counter((_norm_dims(layer), _kind(layer)) for _, layer in hidden)
    summary = ", ".join(
        f"BatchNorm{dims}d after {_counted([kind] * n, ' layer')}"
        for (dims, kind), n in groups.items()
    )
    pairs = "".join(
        f'    ("{name}", nn.BatchNorm{_norm_dims(m)}d({_features(m)})),\n' for name, m in hidden
    )
    code = "import torch.nn as nn\n\nfor name, norm in [\n" + pairs + "]:\n"
    code += _REPLACE_LOOP.format(new="nn.Sequential(model.get_submodule(name), norm)")

    def build() -> nn.Module:
        for name, layer in hidden:
            _set_module(model, name, nn.Sequential(layer, _norm_for(layer)))
        return model

    summary += " (not the output layer)" + _skipped_note(model)
    return _Plan(Change("batchnorm", summary, code), build)


def _skipped_note(model: nn.Module) -> str:
    """Mention layers inside torch's composites (attention, LSTM), which get no BatchNorm."""
    composites = [m for _, m in _own_modules(model) if _is_torch_composite(m)]
    owners, layers = [], []
    for composite in composites:
        inside = [m for m in list(composite.modules())[1:] if isinstance(m, _LAYER_TYPES)]
        owners += [type(composite).__name__] if inside else []
        layers += inside
    if not layers:
        return ""
    return (
        f"; {_counted(map(_kind, layers), ' layer')} inside {', '.join(dict.fromkeys(owners))} "
        "left as they are (torch reads their weights directly)"
    )
