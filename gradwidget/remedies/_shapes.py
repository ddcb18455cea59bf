"""Which modules map x to the shape of x as a chain of steps: the blocks a skip can go around."""

from __future__ import annotations

from dataclasses import dataclass

from torch import fx, nn

from ._fx import trace
from ._tree import LAYER_TYPES, is_torch_object

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
_KEEP_SHAPE = (*_NORMS, nn.Identity, nn.modules.dropout._DropoutNd)
# Elementwise activations, as modules and as calls in a custom block's forward.
_ACTIVATIONS = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.RReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU,
    nn.SiLU, nn.Mish, nn.Softplus, nn.Sigmoid, nn.Tanh, nn.Hardtanh, nn.Hardsigmoid,
    nn.Hardswish, nn.Softsign, nn.LogSigmoid, nn.Tanhshrink,
)  # fmt: skip
_ACTIVATION_CALLS = frozenset({
    "relu", "relu6", "leaky_relu", "prelu", "elu", "selu", "celu", "gelu", "silu", "mish",
    "softplus", "sigmoid", "expit", "tanh", "hardtanh", "hardsigmoid", "hardswish", "softsign",
    "logsigmoid",
})  # fmt: skip


@dataclass(frozen=True)
class Chain:
    """A chain of steps that keeps its input's shape: how many layers and activations."""

    layers: int = 0
    activations: int = 0

    def __add__(self, other: Chain) -> Chain:
        return Chain(self.layers + other.layers, self.activations + other.activations)


def chain_of(module: nn.Module | None) -> Chain | None:
    """What ``module`` holds if it maps x to the shape of x as a chain; None if not known.

    A skip connection (``x + f(x)``) is no chain: its forward uses x twice.
    """
    if module is None:
        return None
    if isinstance(module, nn.Linear):
        return Chain(1) if module.in_features == module.out_features else None
    if isinstance(module, _CONVS):
        return Chain(1) if _keeps_size(module) else None
    if isinstance(module, _ACTIVATIONS):
        return Chain(activations=1)
    if isinstance(module, _KEEP_SHAPE):
        return Chain()
    if plain_sequential(module):
        children = list(module._modules.values())
        parts = [chain_of(child) for child in children]
        # An in-place first step would change x itself before x + f(x) adds it.
        if None in parts or getattr(children[0], "inplace", False):
            return None
        return sum(parts, Chain())
    if is_torch_object(module) or not _only_known_parts(module):
        return None
    return _traced_chain(module)


def _keeps_size(conv: nn.Module) -> bool:
    if conv.in_channels != conv.out_channels or any(s != 1 for s in conv.stride):
        return False
    if conv.padding == "same":
        return True
    spans = zip(conv.padding, conv.dilation, conv.kernel_size, strict=True)
    return conv.padding != "valid" and all(2 * p == d * (k - 1) for p, d, k in spans)


def plain_sequential(module: nn.Module) -> bool:
    """A Sequential that runs its children in order (a subclass may change forward)."""
    return isinstance(module, nn.Sequential) and type(module).forward is nn.Sequential.forward


def _only_known_parts(module: nn.Module) -> bool:
    """Whether every leaf module inside is a layer, activation, norm or dropout.

    Checked before tracing: a transformer block or an attention module fails it at once, so a
    large model costs no torch.fx trace per submodule.
    """
    leaves = [m for m in module.modules() if not m._modules]
    return all(isinstance(m, (*LAYER_TYPES, *_ACTIVATIONS, *_KEEP_SHAPE)) for m in leaves)


def _traced_chain(module: nn.Module) -> Chain | None:
    """A custom module whose forward is one input through shape-keeping steps, in a row."""
    graph, _ = trace(module)
    if graph is None:
        return None
    nodes = list(graph.nodes)
    if [n.op for n in nodes].count("placeholder") != 1 or nodes[0].op != "placeholder":
        return None
    total, previous = Chain(), nodes[0]
    for node in nodes[1:]:
        if node.all_input_nodes != [previous] or len(previous.users) != 1:
            return None  # a branch, or a second use of a value: not a chain
        if node.op == "output":
            return total
        step = _traced_step(module, node)
        if step is None or (previous is nodes[0] and _in_place(module, node)):
            return None  # unknown, or an in-place change of x itself
        total, previous = total + step, node
    return None


def _traced_step(module: nn.Module, node: fx.Node) -> Chain | None:
    if node.op == "call_module":
        return chain_of(module.get_submodule(str(node.target)))
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    return Chain(activations=1) if str(name).rstrip("_") in _ACTIVATION_CALLS else None


def _in_place(module: nn.Module, node: fx.Node) -> bool:
    if node.op == "call_module":
        return bool(getattr(module.get_submodule(str(node.target)), "inplace", False))
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", "")
    return str(name).endswith("_") or bool(node.kwargs.get("inplace", False))
