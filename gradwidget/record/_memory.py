"""What recording may hold beside the model: 1 % of its parameter bytes, all of it together.

Two things grow with the model, and they share the 1 %:

* the update-ratio sample (:class:`~gradwidget.record._layers.UpdateTracker`, on the
  parameters' device) gets a quarter of it. Update ratios are read in decades (the rule
  fires below 1e-4 or above 1e-1), so a sample a quarter the size, with about twice the
  error, still places every layer in the right one (measured in ``docs/performance.md``);
* the bounded :class:`~gradwidget.History` (on the host) gets the rest, as a number of
  buckets per series: between :data:`MIN_CAPACITY` and :data:`MAX_CAPACITY`, the most a
  chart draws at full resolution.

A model under about 10M parameters has so few bytes that its 1 % would leave a chart of a
handful of points and a sample of a few coordinates a tensor: its history may hold
:data:`HISTORY_FLOOR` and its sample :data:`UPDATE_FLOOR` instead (at 10M float32 parameters
the two together are the 1 %). An explicit ``capacity`` given to the recorder is used as given.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..history import SCALARS, capacity_within
from ._measure import SERIES
from .distributed import local

__all__ = ["HISTORY_FLOOR", "MAX_CAPACITY", "MIN_CAPACITY", "SHARE", "UPDATE_FLOOR",
           "UPDATE_SHARE", "history_capacity", "parameter_bytes"]  # fmt: skip

SHARE = 0.01  # of the parameter bytes: all that recording holds beside the model
UPDATE_SHARE = SHARE / 4  # the update-ratio sample's part
HISTORY_FLOOR = 256 * 1024  # bytes of history any model may keep (1 % of 10M float32 is 340 KB)
UPDATE_FLOOR = HISTORY_FLOOR // 4  # bytes of update sample any model may keep
# Buckets a series: a full series is halved, so 64 leaves 32 to 64 points a line; from about
# 600 a chart (at most 300 points a line) looks as it would with every step kept.
MIN_CAPACITY, MAX_CAPACITY = 64, 1024
_OTHER_SCALARS = 4  # accuracy, test_accuracy, amp_scale, amp_skipped: written by some runs


def parameter_bytes(params: Iterable[torch.Tensor]) -> int:
    """Bytes of the parameters this process holds (a sharded tensor's own shard)."""
    return sum(t.numel() * t.element_size() for t in map(local, params))


def history_capacity(param_bytes: int, layers: int, measure: Iterable[str]) -> int:
    """Buckets per series that keep a recorder's history within its part of :data:`SHARE`.

    Parameters
    ----------
    param_bytes : int
        The model's parameter bytes (:func:`parameter_bytes`).
    layers : int
        Columns of each per-layer series.
    measure : iterable of str
        The tiers recorded (see :mod:`gradwidget.record._measure`): only their series count.
    """
    names = {name for tier in measure for name in SERIES[tier]} | {"train_loss"}
    widths = [1 if name in SCALARS else layers for name in names] + [1] * _OTHER_SCALARS
    allowance = max((SHARE - UPDATE_SHARE) * param_bytes, HISTORY_FLOOR)
    return min(MAX_CAPACITY, max(MIN_CAPACITY, capacity_within(allowance, widths)))
