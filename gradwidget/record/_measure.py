"""What a recorder measures: tiers that each cost something, and the series each one feeds.

Nothing is computed for a tier that is not asked for: without ``"gradients"`` no norm is
taken (the loss is still ticked every step); without ``"activations"`` no forward hook is
attached after the first step (which only tells the execution order); without ``"updates"``
no weights are sampled.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..errors import GradWidgetError
from .activations import FIELDS

__all__ = ["ALL", "SERIES", "measures"]

#: The series each tier feeds (``train_loss`` is recorded in every case).
SERIES: dict[str, tuple[str, ...]] = {
    "gradients": ("grad_norm", "nonfinite", "loss"),
    "activations": FIELDS,
    "updates": ("weight_norm", "update_ratio"),
}
ALL = frozenset(SERIES)


def measures(measure: str | Iterable[str] | None) -> frozenset[str]:
    """The tiers asked for (None: all of them), checked against :data:`SERIES`."""
    if measure is None:
        return ALL
    asked = frozenset([measure] if isinstance(measure, str) else measure)
    unknown = sorted(asked - ALL)
    if unknown:
        raise GradWidgetError(
            f"Unknown measure {', '.join(map(repr, unknown))}: choose from "
            f"{', '.join(map(repr, sorted(ALL)))}."
        )
    return asked
