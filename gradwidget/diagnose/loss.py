"""Rules on the loss: oscillating, slow convergence, plateau (AUTOTRAINER's loss problems).

They read the every-step ``train_loss`` when there is one (else the sampled ``loss``) over the
last ``loss_fraction`` of the steps seen, split in halves; medians make them robust to the
minibatch noise of a per-step loss. The starting value is the scale: for cross-entropy it is
about ``log(classes)``, whatever the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..history import History
from .findings import Finding, Thresholds, make_finding
from .windows import last_step, recent, span

__all__ = ["oscillating", "plateau", "slow_convergence"]

_CHUNKS = 8  # a loss window is read as 8 chunk medians: enough to see a swing, each ~robust
# Batch accuracies are noisy (a batch of 8 at 80 %: +-14 points): medians of blocks of 10
# bring that to about +-5, well under the accuracy_drop bar.
_ACCURACY_BLOCK = 10


@dataclass(frozen=True)
class _Loss:
    """The loss of a run as the loss rules read it."""

    steps: np.ndarray  # finite points only: non-finite losses are the non_finite rule's
    values: np.ndarray
    last: int  # the newest step of the run
    span: int  # steps in the window
    start: float  # median of the first points
    before: float  # median of the window's first half
    now: float  # median of the window's second half

    @property
    def improvement(self) -> float:
        """Relative fall from the first to the second half of the window."""
        return (self.before - self.now) / self.before

    def chunk_medians(self) -> tuple[np.ndarray, np.ndarray]:
        """Medians of chunks of ``span / 8`` steps, counted back from the newest step, oldest
        first; and which of them lie inside the window."""
        size = max(self.span // _CHUNKS, 1)
        index = (self.last - self.steps) // size
        # Every chunk's median at once: sort by chunk, then by value, and read each chunk's
        # middle (a redraw diagnoses a long loss curve in dozens of chunks).
        order = np.lexsort((self.values, index))
        chunks, starts, counts = np.unique(index[order], return_index=True, return_counts=True)
        ranked = self.values[order]
        medians = (ranked[starts + (counts - 1) // 2] + ranked[starts + counts // 2]) / 2
        return medians[::-1], chunks[::-1] < _CHUNKS


def _read(history: History, t: Thresholds) -> _Loss | None:
    curve = history.loss_curve()
    values = curve.last[:, 0].astype(np.float64)
    finite = np.isfinite(values)
    steps, values = curve.steps[finite], values[finite]
    if values.size < t.plateau_window:
        return None
    last = last_step(history)
    if last + 1 < t.loss_steps:
        return None
    rows = recent(steps, last, t, t.loss_fraction, t.plateau_window)
    window = values[rows]
    half = window.size // 2
    if half < t.min_samples:
        return None
    start = float(np.median(values[: t.plateau_window // 2]))
    before, now = float(np.median(window[:half])), float(np.median(window[half:]))
    if start <= 0 or before <= 0:
        return None  # a relative change needs a positive loss
    width = span(last, t.loss_fraction, t.plateau_window)
    return _Loss(steps, values, last, width, start, before, now)


# -- oscillating --------------------------------------------------------------------------------


def _swings(loss: _Loss, t: Thresholds) -> tuple[float, float]:
    """The rises of the window's chunk medians (where the loss does not fall over the window),
    and how far the loss climbed back above the lowest chunk before the window; both in units
    of the starting loss."""
    medians, inside = loss.chunk_medians()
    rises = np.clip(np.diff(medians[inside]), 0, None).sum()
    swing = float(rises) / loss.start if loss.improvement < t.plateau_improvement else 0.0
    earlier = medians[~inside]
    rebound = (loss.now - earlier.min()) / loss.start if earlier.size else 0.0
    return swing, max(float(rebound), 0.0)


def _accuracy_drop(history: History, last: int, t: Thresholds) -> tuple[str, float]:
    """The largest fall of an accuracy below its best so far, in the last ``window_limit`` of
    the run: the test accuracy if recorded, else medians of blocks of the batch accuracy."""
    for name in ("test_accuracy", "accuracy"):
        series = history.series(name)
        values = series.last[:, 0].astype(np.float64)
        steps = series.steps
        if name == "accuracy":  # whole blocks, counted back from the newest point
            first = values.size % _ACCURACY_BLOCK
            values = np.median(values[first:].reshape(-1, _ACCURACY_BLOCK), axis=1)
            steps = steps[first + _ACCURACY_BLOCK - 1 :: _ACCURACY_BLOCK]  # each block's last
        if values.size >= 2:
            late = steps > last - span(last, t.window_limit, t.window)
            drop = (np.fmax.accumulate(values) - values)[late]
            return name.replace("_", " "), float(drop.max(initial=0.0))
    return "", 0.0


def oscillating(history: History, t: Thresholds) -> Finding | None:
    """The loss swings instead of falling, climbs back up, or an accuracy falls far below its
    best (AUTOTRAINER's oscillating loss)."""
    loss = _read(history, t)
    name, drop = _accuracy_drop(history, last_step(history), t)
    swing, rebound = _swings(loss, t) if loss is not None else (0.0, 0.0)
    if max(swing, rebound) < t.oscillation and drop < t.accuracy_drop:
        return None
    parts = []
    if swing >= t.oscillation and loss is not None:  # a swing is measured on a loss only
        parts.append(f"over the last {loss.span} steps it rose by {swing:.0%} of its start")
    if rebound >= t.oscillation:
        parts.append(f"it climbed back {rebound:.0%} of its start above the lowest level it had")
    if drop >= t.accuracy_drop:
        parts.append(f"the {name} fell {drop:.0%} below its best")
    level = f" (now {loss.now:.3g}, start {loss.start:.3g})" if loss is not None else ""
    message = (
        f"The loss swings instead of falling{level}: {'; '.join(parts)}. Each step overshoots "
        "the valley it aims for: the learning rate is too large for the loss surface (one "
        "oversized step can also kill ReLU units for good). A 10x lower learning rate, Adam "
        "at 1e-3 (a step size per weight) or clipping the gradient norm tame the steps."
    )
    evidence = {"swing": swing, "rebound": rebound, "accuracy_drop": drop}
    if loss is not None:
        evidence |= {"loss": loss.now, "start_loss": loss.start}
    return make_finding("oscillating", history, np.zeros(0, bool), evidence, message)


# -- slow convergence and plateau ----------------------------------------------------------------


def _moving(loss: _Loss, t: Thresholds) -> bool:
    """Whether the loss is swinging: then it is not stuck or slow, it is oscillating."""
    return max(_swings(loss, t)) >= t.oscillation


def slow_convergence(history: History, t: Thresholds) -> Finding | None:
    """The loss still falls, but at its recent pace would not halve within another run."""
    loss = _read(history, t)
    if loss is None or loss.improvement < t.plateau_improvement:
        return None
    target = t.plateau_level * loss.start
    pace = (loss.before - loss.now) / (loss.span / 2)  # loss per step
    needed = (loss.now - target) / pace
    if loss.now <= target or needed <= t.slow_factor * (loss.last + 1) or _moving(loss, t):
        return None
    message = (
        f"The loss falls too slowly to get anywhere: {loss.now:.3g} after {loss.last + 1} "
        f"steps (start {loss.start:.3g}), down {loss.improvement:.1%} over the last "
        f"{loss.span} steps; at that pace it needs about {needed:,.0f} more steps to reach "
        f"{t.plateau_level:.0%} of its start. The steps are too small for the loss surface: "
        "a 10x larger learning rate, or Adam at 1e-3 (a step size per weight), moves faster."
    )
    evidence = {
        "loss": loss.now,
        "start_loss": loss.start,
        "improvement": loss.improvement,
        "steps_needed": needed,
    }
    return make_finding("slow_convergence", history, np.zeros(0, bool), evidence, message)


def plateau(history: History, t: Thresholds) -> Finding | None:
    """The loss has stopped falling while still above ``plateau_level`` of its start."""
    loss = _read(history, t)
    if loss is None or loss.improvement >= t.plateau_improvement:
        return None
    if loss.now <= t.plateau_level * loss.start or _moving(loss, t):
        return None
    message = (
        f"The loss has stalled: it improved by {loss.improvement:.1%} over the last "
        f"{loss.span} steps and is still {loss.now:.3g}, more than {t.plateau_level:.0%} of "
        f"its starting value {loss.start:.3g}. If a gradient finding is listed too, fix that "
        "first; otherwise try Adam at 1e-3 or a 10x larger learning rate."
    )
    evidence = {"improvement": loss.improvement, "loss": loss.now, "start_loss": loss.start}
    return make_finding("plateau", history, np.zeros(0, bool), evidence, message)
