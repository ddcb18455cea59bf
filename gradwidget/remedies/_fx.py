"""Reading a module's forward with torch.fx, safely while other threads train."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from torch import fx, nn

from ._norm import FeatureBatchNorm1d


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


def trace(model: nn.Module) -> tuple[fx.Graph | None, str | None]:
    """The graph of ``model.forward``, or None and fx's first line of why it could not."""
    try:
        graph = _ThreadLocalTracer().trace(model)
    except Exception as error:  # any failure means: forward cannot be read symbolically
        return None, str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
    for node in graph.nodes:
        # String annotations (from __future__ import annotations) would end up as str
        # globals of the generated code, which fx then fails to pickle.
        node.type = None
    return graph, None
