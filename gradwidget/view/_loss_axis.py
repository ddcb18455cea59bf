"""A loss axis that picks log or linear from the data: one spike must not flatten the rest."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import bqplot as bq
import numpy as np

from ._figures import set_ticks
from ._ranges import Range, loss_range

__all__ = ["LossAxis"]


class LossAxis:
    """The y axis of loss lines, and the scale they are drawn on (see :func:`loss_range`).

    Marks are moved between its log and its linear scale when the data asks for the other.
    """

    def __init__(self, label: str = "loss") -> None:
        # Domains from the start: a figure shown before its first loss (own loop, no loss
        # passed) would draw its axis at NaN, and its view fails in the browser.
        self.log_scale, self.linear_scale = (
            bq.LogScale(min=0.1, max=10.0),
            bq.LinearScale(min=0.0, max=1.0),
        )
        self.range = Range(0.1, 10.0, True, np.array([0.1, 1.0, 10.0]))
        self.axis = bq.Axis(
            scale=self.log_scale, side="left", label=label, tick_format="~g",
            tick_values=self.range.ticks,
        )  # fmt: skip

    @property
    def scale(self) -> bq.Scale:
        """The scale in use: give it to a mark made after the last :meth:`fit`."""
        return self.log_scale if self.range.log else self.linear_scale

    def fit(self, marks: Iterable[bq.Mark], arrays: Sequence[np.ndarray]) -> Range:
        """Fit the axis to ``arrays`` and put ``marks`` (their y) on the matching scale."""
        self.range = loss_range(arrays)
        scale = self.scale
        with scale.hold_sync():
            scale.min, scale.max = self.range.low, self.range.high
        for mark in marks:
            if mark.scales.get("y") is not scale:
                mark.scales = {**mark.scales, "y": scale}
        if self.axis.scale is not scale:
            self.axis.scale = scale
        set_ticks(self.axis, self.range.ticks)
        return self.range
