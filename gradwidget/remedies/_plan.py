"""What a remedy would change (``Change``), the plan that applies it, and summary wording."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

# The loop that pasted code uses to put a new module in each named slot of ``model``.
REPLACE_LOOP = """    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent), child, {new})
"""


@dataclass(frozen=True)
class Change:
    """What a remedy would do to a model, before it is applied.

    Attributes
    ----------
    name : str
        The remedy's registered name (``gradwidget.remedies.REGISTRY``).
    summary : str
        One line for users, e.g. ``"9 Sigmoid -> ReLU"``.
    code : str
        The same change as plain PyTorch, to paste into one's own code (``model`` is the model).
    """

    name: str
    summary: str
    code: str


@dataclass(frozen=True)
class Plan:
    """A checked remedy: its ``Change``, and ``build`` to apply it.

    ``build`` changes the planned copy and returns it: a new model for a model remedy, new
    training settings for a training remedy.
    """

    change: Change
    build: Callable[[], Any]


def counted(kinds: Iterable[str], noun: str = "") -> str:
    """ "9 Sigmoid" or "2 Conv2d, 1 Linear layers" (plural noun when more than one)."""
    counts = Counter(kinds)
    plural = "s" if noun and sum(counts.values()) > 1 else ""
    return ", ".join(f"{n} {kind}" for kind, n in counts.items()) + noun + plural


def listed(labels: Iterable[str]) -> str:
    """Labels once each, in first-seen order, comma separated."""
    return ", ".join(dict.fromkeys(labels))


def names_code(names: Iterable[str]) -> str:
    """A Python list literal of the names, for pasted code."""
    return "[" + ", ".join(f'"{name}"' for name in names) + "]"
