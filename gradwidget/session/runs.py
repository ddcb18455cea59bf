"""A session's runs: the record kept for each and its unique name."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from torch import nn

from ..history import History
from ..train.training import Run

__all__ = ["RunRecord", "unique_name"]


@dataclass(frozen=True)
class RunRecord:
    """One run of a session: its name, remedies, the model it trains and the :class:`Run`.

    ``role`` says why it exists: ``"run"`` (the user asked), ``"trial"`` (a short run of the
    automatic repair) or ``"winner"`` (the repair's full retrain); ``note`` is its score or
    verdict in words, for tables and legends.
    """

    name: str
    remedies: tuple[str, ...]
    model: nn.Module
    run: Run
    role: str = "run"
    note: str = ""

    @property
    def history(self) -> History:
        """A snapshot of the run's history."""
        return self.run.history


def unique_name(label: str, taken: Collection[str]) -> str:
    """``label``, or ``"label (2)"``, ``"label (3)"``... if that name is taken."""
    candidates = (label if i == 1 else f"{label} ({i})" for i in range(1, len(taken) + 2))
    return next(name for name in candidates if name not in taken)
