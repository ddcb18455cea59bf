"""How :mod:`gradwidget.diagnose.structure` reads layer names: blocks, short names, kinds.

Pure string rules (no torch, no numpy), kept apart so the structure module holds the data
types and the public API.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

__all__ = ["block_of", "block_short", "kind_of", "short_names"]

# Name fragments that give a layer's kind away, tried in this order (a LayerNorm inside an
# attention module is a norm; a projection inside `embeddings` is part of the embedding).
_NAME_HINTS = (
    ("norm", re.compile(r"(^|_)(ln|norm|layernorm|layer_norm|bn|batchnorm)(_|\d|$)|norm")),
    ("embedding", re.compile(r"embed|^wte$|^wpe$|^tok|^pos_")),
    ("attention", re.compile(r"attn|attention|^(query|key|value|q_proj|k_proj|v_proj|o_proj)$")),
    ("mlp", re.compile(r"mlp|ffn|feed_?forward|intermediate|^c_fc$|^fc\d?$|^(up|down|gate)_proj$")),
    ("head", re.compile(r"head|classifier|pooler|^out(put)?$")),
    ("conv", re.compile(r"conv|shortcut|downsample")),
)
_TYPE_HINTS = (
    ("embedding", re.compile(r"^Embedding")),
    ("attention", re.compile(r"Attention")),
    ("conv", re.compile(r"^Conv[123]d$|^ConvTranspose")),
)
_NORM_TYPE = re.compile(r"Norm")


def block_of(names: Sequence[str]) -> list[str | None]:
    """The block of each layer: its shallowest numbered prefix inside a repeating container."""
    under = Counter(p for n in names for p in _numbered_prefixes(n))
    children: Counter[str] = Counter(p.rpartition(".")[0] for p, c in under.items() if c >= 2)
    return [
        next(
            (
                p
                for p in _numbered_prefixes(n)
                if under[p] >= 2 and children[p.rpartition(".")[0]] >= 2
            ),
            None,
        )
        for n in names
    ]


def _numbered_prefixes(name: str) -> list[str]:
    """Prefixes ending in a number that strictly contain ``name`` (``a.3`` of ``a.3.fc``)."""
    parts = name.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts) - 1) if parts[i].isdigit()]


def short_names(names: Sequence[str]) -> list[str]:
    """Shortest suffix of each name that no other layer shares, never starting at a number."""
    parts = [n.split(".") for n in names]
    counts = Counter(".".join(p[-k:]) for p in parts for k in range(1, len(p) + 1))
    out = []
    for p in parts:
        k = next(k for k in range(1, len(p) + 1) if counts[".".join(p[-k:])] == 1 or k == len(p))
        while p[-k].isdigit() and k < len(p):  # `3.attn` reads worse than `h.3.attn`
            k += 1
        out.append(".".join(p[-k:]))
    return out


def kind_of(name: str, module_type: str, in_block: bool, is_last: bool) -> str:
    """Norm type first, then the name's parts from the innermost out, then the module type."""
    if _NORM_TYPE.search(module_type):
        return "norm"
    for part in reversed(name.lower().split(".")):
        for kind, pattern in _NAME_HINTS:
            # `output` inside a block is a sublayer's projection (BERT), not the model's head
            if pattern.search(part) and not (in_block and kind == "head"):
                return kind
    typed = next((k for k, pattern in _TYPE_HINTS if pattern.search(module_type)), None)
    if typed:
        return typed
    if in_block:
        return "mlp"  # an unnamed dense layer inside a repeated block: its feed-forward part
    return "head" if is_last else "other"


def block_short(path: str) -> str:
    """``transformer.h.3`` -> ``h.3``; a numbered child of the root -> ``block 3``."""
    parts = path.split(".")
    return ".".join(parts[-2:]) if len(parts) >= 2 else f"block {parts[0]}"
