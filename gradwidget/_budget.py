"""One time budget for everything the recorder samples.

A recorded run pays for four things: a tick every step (the loss and a sentinel norm), gradient
captures, activation samples (a hooked forward pass, statistics of every layer's output and a
copy of the weights) and the update ratio read on the step after each sample. The schedule
measures each from the times at which ``capture`` is entered and left, and stretches the
gradient and the activation interval by one common factor until, together with the ticks, they
cost at most ``budget`` of a plain step. Measured in shared/NOTES.md: on a 4.4 ms MLP step one
capture of all norms costs about 6.6 % of the step, and an activation sample about 2 ms of a
7 ms step, so on small CPU models both intervals must widen.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

__all__ = ["Schedule", "StepKind"]

_MAX_FACTOR = 64  # never thin the gradient series more than this, whatever the cost
# The diagnosis judges windows of 20 samples (40 loss points for a plateau), so the first ones
# of every run are never thinned: a short run stays diagnosable whatever its cost.
_FULL_GRADS, _FULL_SAMPLES = 40, 20
_WARMUP_STEPS = 5  # first steps pay one-off costs; keep them out of the estimates
_SMOOTHING = 0.1
_ADAPT_EVERY = 8  # steps between two decisions: the estimates move slowly anyway


@dataclass(frozen=True)
class StepKind:
    """What one ``capture`` call did, for the cost estimates."""

    grads: bool  # gradient norms were captured
    hooked: bool  # the forward pass ran with activation hooks (an activation sample)
    update: bool  # the update ratio of the previous sample was measured


class Schedule:
    """When gradients and activations are due, under one time budget.

    Parameters
    ----------
    budget : float or None
        Largest fraction of a plain training step that recording may cost; None: no limit
        (gradients every step, activations every ``act_every`` steps).
    act_every : int
        Shortest interval between activation samples (0: none).
    """

    def __init__(self, budget: float | None, act_every: int) -> None:
        self.budget = budget
        self.act_every = act_every
        self.grad_every = 1
        self.act_interval = act_every
        self._last_grads: int | None = None
        self._last_acts: int | None = None
        self._grads_taken = self._samples_taken = 0
        self._left: float | None = None
        self._plain_s = self._tick_s = self._grads_s = 0.0  # running means, seconds
        self._samples: deque[float] = deque(maxlen=5)  # median: samples are few and noisy
        self._sample_s = 0.0  # their median
        self._sample_excess: float | None = None  # cost of a sample until its update step

    def grads_due(self, step: int, force: bool) -> bool:
        """Whether ``step`` captures gradients (and remember it when it does).

        Counted from the last capture, not ``step % grad_every``: when the interval changes, a
        modulo schedule can leave a gap of almost twice the interval.
        """
        last = self._last_grads
        due = force or last is None or step - last >= self.grad_every
        if due:
            self._last_grads = step
            self._grads_taken += 1
        return due

    def acts_due(self, step: int) -> bool:
        """Whether the forward pass of ``step`` is an activation sample."""
        last = self._last_acts
        return bool(self.act_every) and (last is None or step - last >= self.act_interval)

    def sampled(self, step: int) -> None:
        """Note that ``step`` took an activation sample."""
        self._last_acts = step
        self._samples_taken += 1

    def observe(self, step: int, entered: float, left: float, kind: StepKind) -> None:
        """Take the times of one ``capture`` call and adapt the intervals."""
        previous, self._left = self._left, left
        if previous is None or step < _WARMUP_STEPS:
            return
        total, inside = left - previous, left - entered
        if not kind.hooked:  # outside capture, an unhooked step is a plain training step
            self._plain_s = _mix(self._plain_s, total - inside)
        if not (kind.grads or kind.hooked or kind.update):
            self._tick_s = _mix(self._tick_s, inside)
        elif kind.grads and not (kind.hooked or kind.update):
            self._grads_s = _mix(self._grads_s, inside - self._tick_s)
        self._note_sample(kind, total, inside)
        if step % _ADAPT_EVERY == 0:
            self._adapt()

    def _note_sample(self, kind: StepKind, total: float, inside: float) -> None:
        """A sample costs its hooked forward, its capture and the capture of the next step."""
        beyond = inside - self._tick_s - kind.grads * self._grads_s
        if kind.hooked:
            self._sample_excess = (total - inside - self._plain_s) + beyond
        elif kind.update and self._sample_excess is not None:
            self._samples.append(max(0.0, self._sample_excess + beyond))
            self._sample_s = float(np.median(self._samples))
            self._sample_excess = None

    def _adapt(self) -> None:
        if self.budget is None:
            return
        available = self.budget * self._plain_s - self._tick_s
        per_sample = self._sample_s / self.act_every if self.act_every else 0.0
        needed = max(self._grads_s, 0.0) + per_sample
        factor = needed / available if available > 0 else math.inf
        k = max(1, min(_MAX_FACTOR, math.ceil(factor) if math.isfinite(factor) else _MAX_FACTOR))
        if self._grads_taken >= _FULL_GRADS:
            self.grad_every = k
        if self._samples_taken >= _FULL_SAMPLES:
            self.act_interval = self.act_every * k


def _mix(old: float, new: float) -> float:
    return new if old == 0.0 else old + _SMOOTHING * (new - old)
