"""One time budget for everything the recorder samples.

A recorded run pays for four things: a tick every step (the loss and a sentinel norm), gradient
captures, activation samples (a hooked forward pass, statistics of every layer's output and a
copy of the weights) and the update ratio read on the step after each sample. The schedule
measures each from the times at which ``capture`` is entered and left, and stretches the
gradient and the activation interval by one common factor until, together with the ticks, they
cost at most ``budget`` of a plain step. Measured (docs/performance.md): on a 4.4 ms MLP step one
capture of all norms costs about 6.6 % of the step, and an activation sample about 2 ms of a
7 ms step, so on small CPU models both intervals must widen.

Every estimate is a median over a short window: on a shared machine a step now and then takes
several times its usual time (the process was descheduled), and a mean would follow it.

The intervals set the rate; the account keeps the total. Everything recording took since step 0
(the first captures that measure the costs, and step 0's, which also finds the layer order)
is weighed against the budget's share of all the training so far, and while recording is over
its share the intervals stay at their widest. On short steps those first captures are most of
the cost: on a 300-step Lightning run of 1.4 ms steps they were 1.5 % of it, paid on top of the
3 % the intervals spent.

A clock makes what is recorded depend on how busy the machine was: the same seeded run then
samples other steps, and its charts, table and findings differ from try to try. Where the
panel trains (a :class:`~gradwidget.Run`) the schedule is a :class:`StepBudget` instead:
intervals that follow the planned step count alone, so a seed gives one history anywhere.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

__all__ = ["DEFAULT_BUDGET", "Schedule", "StepBudget", "StepKind"]

# A recorder's default time budget. Measured totals run above what the clock charges (the
# cold caches a capture leaves slow the next step's torch calls more than the spill estimate
# sees): at 3 % a 300-step Lightning run of 4.4 ms steps cost 1.05-1.07x, at 2 % 1.00-1.01x.
DEFAULT_BUDGET = 0.02

_MAX_FACTOR = 64  # never thin the gradient series more than this, whatever the cost
# A planned run (StepBudget) never thins its first gradient captures and activation samples:
# its charts start densely, and what they cost is part of the run's fixed plan (a head of
# 40 / 20 cost about 2 % of a 600-step run of the tutorial's MLP; each sample of the mlp10
# benchmark, with the update ratio read on the step after it, costs 2.5 ms of its 4.5 ms step).
_HEAD_GRADS, _HEAD_SAMPLES = 10, 3
# ... and keeps its charts moving however far away its end is: at least this many gradient
# captures and activation samples per doubling of the steps done. A 200,000-step run would
# otherwise capture every 4,000 steps from step 10 on, and stand still for minutes after its
# first second. On a 600-step run this adds 4 captures and a sample to the plan's 59 and 10.
_GRADS_PER_DOUBLING, _SAMPLES_PER_DOUBLING = 3, 1
# Under the time budget only the captures that measure the costs come before it: every other
# step until the first decision (step 8), so that both gradient captures and plain ticks are
# timed. A head of 40 captures and 20 samples cost 40 ms, 12 % of a 300-step run of 1.4 ms
# Lightning steps (docs/performance.md). The sample's cost is first taken from step 0's
# capture, which holds one (and finds the layer order too, so it is no underestimate): a
# second sample only to measure it cost 2 ms of that run's 420.
_MEASURED_GRADS = 5
_WARMUP_STEPS = 5  # first steps pay one-off costs; keep them out of the estimates
# Steps between two decisions: 8 while the first estimates form, then 32 (each decision sorts
# six windows: on a 1.4 ms step, deciding every 8 steps cost a tenth of the per-step tick).
_ADAPT_EVERY, _ADAPT_LATER, _SETTLED = 8, 32, 64
# Under a time budget two steps between decisions are timed even when nothing is due: the one
# before a decision (a tick) and the decision's own (the plain step after a tick, and its
# tick). The others leave their tick untimed (see Schedule.quiet_until). A timed tick cost
# 30-50 us against 17-20 untimed on 1.4 ms Lightning steps: timing 2 in 8 steps cost 0.5 %.


@dataclass(frozen=True)
class StepBudget:
    """Sampling intervals fixed by the step count, never by the clock.

    Attributes
    ----------
    steps : int or None
        The planned length of the run; None (e.g. batches of unknown number): the intervals
        double as the run grows, still a function of the step alone.
    points : int
        Gradient captures to aim for over the run (default 50): ``steps // points`` between
        two, so the diagnosis's window (the last tenth of the steps) holds about 5, more than
        its ``min_samples`` (3). In a managed run of the ``mlp10`` benchmark a capture costs
        about 0.5 ms, a tenth of its step: 1 % of the run, the largest part of what it records.
    act_points : int
        Activation samples to aim for (default 8), never closer than ``act_every``. On the
        ``mlp10`` benchmark (10 sigmoid layers of 256, batch 128) a sample costs about 2.5 ms
        against a 4.5 ms step (hooks, statistics, the weight sample and its update), so the
        17 that 12 points and a head of 5 took cost 1.5 % of a 600-step run; the unit rules
        need 3 samples within the last half of a run at most, which 8 still leave (4).

    Notes
    -----
    On the tutorial's 10-layer width-64 sigmoid MLP (600 steps, one thread) a run recorded
    this way took 1.24x the CPU time of plain training with 100 / 50 points and a head of 40
    captures and 20 samples, 1.37x with 200 / 100 points (docs/performance.md). With half as
    many points and a quarter of that head a run without the panel went at 0.935x a plain
    loop (11 rounds), still short of the 0.95x the panel aims at; with 50 / 8 points and a
    head of 10 captures and 3 samples, at 0.96-0.97x (benchmarks/results/cpu.md).
    """

    steps: int | None
    points: int = 50
    act_points: int = 8

    def intervals(self, act_every: int, step: int) -> tuple[int, int]:
        """The gradient and the activation interval in force at ``step``.

        The first ``_HEAD_GRADS`` steps and ``_HEAD_SAMPLES`` samples are never thinned: a
        long run's charts start at once. After them the intervals spread ``points`` and
        ``act_points`` over ``steps``, but grow with the run where that would leave fewer
        than ``_GRADS_PER_DOUBLING`` and ``_SAMPLES_PER_DOUBLING`` per doubling of the steps
        done. Either way a function of ``step`` alone, which never shrinks as it grows.
        """
        done = 1 << max(step, 1).bit_length()  # the steps so far, rounded up to a power of two
        # Unknown length: a power of two at most the steps so far (changes log(steps) times).
        length = done // 2 if self.steps is None else self.steps
        grad_every = min(length // self.points, done // (2 * _GRADS_PER_DOUBLING))
        grad_every = 1 if step < _HEAD_GRADS else max(1, grad_every)
        if not act_every or step < _HEAD_SAMPLES * act_every:
            return grad_every, act_every
        act = min(length // self.act_points, done // (2 * _SAMPLES_PER_DOUBLING))
        return grad_every, max(act_every, act)


@dataclass(frozen=True)
class StepKind:
    """What one ``capture`` call did, for the cost estimates."""

    grads: bool  # gradient norms were captured
    hooked: bool  # the forward pass ran with activation hooks (an activation sample)
    update: bool  # the update ratio of the previous sample was measured

    @staticmethod
    def of(grads: bool, hooked: bool, update: bool) -> StepKind:
        """The shared instance for these flags: ``capture`` runs every step, and building a
        dataclass there costs as much as reading the loss. Kinds are told apart by identity
        (``is``): a dataclass ``==`` is a Python call, made on every step."""
        return _KINDS[grads, hooked, update]


class _Window:
    """The median of the last ``size`` values, as of the last :meth:`refresh` (0 before)."""

    def __init__(self, size: int = 32) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self.median = 0.0

    def add(self, value: float) -> None:
        self._values.append(value)

    def __bool__(self) -> bool:
        return bool(self._values)

    def refresh(self) -> None:
        ordered = sorted(self._values)  # 32 floats: about 1 us; done every few steps only
        self.median = ordered[len(ordered) // 2] if ordered else 0.0


class Schedule:
    """When gradients and activations are due, under one time budget.

    Parameters
    ----------
    budget : float, StepBudget or None
        Largest fraction of a plain training step that recording may cost; a
        :class:`StepBudget`: intervals from the step count alone; None: no limit (gradients
        every step, activations every ``act_every`` steps).
    act_every : int
        Shortest interval between activation samples (0: none).
    """

    def __init__(self, budget: float | StepBudget | None, act_every: int) -> None:
        self.plan = budget if isinstance(budget, StepBudget) else None
        self.budget = None if self.plan is not None else budget  # the time budget
        self.act_every = act_every
        self.grad_every = 1 if budget is None else 2
        self.act_interval = act_every
        if self.plan is not None:
            self.grad_every, self.act_interval = self.plan.intervals(act_every, 0)
        self._last_grads: int | None = None
        self._last_acts: int | None = None
        self._grads_taken = 0
        self._left: float | None = None
        self._previous: StepKind | None = None
        # Seconds: the training step after a plain step (clean), after a gradient capture
        # (cold cache) or after anything; a tick; a gradient capture; an activation sample.
        self._clean, self._after_grads, self._any = _Window(), _Window(), _Window()
        self._tick, self._grads, self._sample = _Window(), _Window(), _Window(9)
        self._sample_excess: float | None = None  # cost of a sample until its update step
        # The account since step 0: seconds recording took, inside capture (ticks included),
        # and seconds of training between captures.
        self._spent = self._trained = 0.0
        self._timed: int | None = None  # the last step observe() was given

    def grads_due(self, step: int, force: bool) -> bool:
        """Whether ``step`` captures gradients (and remember it when it does).

        Counted from the last capture, not ``step % grad_every``: when the interval changes, a
        modulo schedule can leave a gap of almost twice the interval.
        """
        if self.plan is not None:
            self.grad_every, self.act_interval = self.plan.intervals(self.act_every, step)
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

    def quiet_until(self, step: int) -> int:
        """The first step from ``step`` on whose capture must take the whole path: gradients
        due, the step that arms a sample's hooks, or (under a time budget) a timed step.
        Steps before it only leave their tick, untimed; :meth:`observe` counts them in the
        account at the measured cost of a tick.

        Intervals only widen while nothing is captured, so a step this calls quiet is one
        that :meth:`grads_due` and :meth:`acts_due` would pass over too.
        """
        if self._last_grads is None:
            return step
        until = self._last_grads + self.grad_every
        if self.act_every:
            last = self._last_acts
            until = min(until, step if last is None else last + self.act_interval - 1)
        if self.budget is not None:
            every = _ADAPT_EVERY if step < _SETTLED else _ADAPT_LATER
            phase = step % every
            until = min(until, step if phase == 0 else step + every - 1 - phase)
        return until

    def observe(self, step: int, entered: float, left: float, kind: StepKind) -> None:
        """Take the times of one ``capture`` call and adapt the intervals."""
        if self.budget is None:
            return  # no time budget: nothing to measure
        previous, self._left = self._left, left
        after, self._previous = self._previous, kind
        untimed = 0 if self._timed is None else step - self._timed - 1  # quiet steps between
        self._timed = step
        inside, ticks = left - entered, untimed * self._tick.median
        self._spent += inside + ticks
        if previous is None:  # step 0: a sample's first estimate (see _MEASURED_GRADS)
            if kind.hooked:
                self._sample.add(inside)
            return
        total = left - previous
        self._trained += total - inside - ticks
        if step < _WARMUP_STEPS:
            return
        if not kind.hooked and not untimed:  # a hooked forward is part of the sample's cost
            self._note_outside(after, total - inside)
        if kind is _PLAIN:
            self._tick.add(inside)
        elif kind is _GRADS:
            self._grads.add(inside)
        if kind.hooked or kind.update:
            self._note_sample(kind, total, inside)
        if step % (_ADAPT_EVERY if step < _SETTLED else _ADAPT_LATER) == 0:
            self._adapt()

    def _note_outside(self, after: StepKind | None, outside: float) -> None:
        """The training step between two captures, by what the capture before it did.

        A capture reads every gradient; the optimizer step right after it then finds the cache
        cold (docs/performance.md: a capture cost 2.9 % of a step alone, 6.6 % in the loop), so
        that spill is charged to gradient captures.
        """
        self._any.add(outside)
        if after is _PLAIN:
            self._clean.add(outside)
        elif after is _GRADS:
            self._after_grads.add(outside)

    def _note_sample(self, kind: StepKind, total: float, inside: float) -> None:
        """A sample costs its hooked forward and its capture, then the next step: its training
        step, slowed by the weights and activations the sample read, and its capture."""
        beyond = inside - self._tick.median - kind.grads * self._grads.median
        if kind.hooked:
            self._sample_excess = (total - inside - self._plain_s) + beyond
        elif kind.update and self._sample_excess is not None:
            beyond += total - inside - self._plain_s
            # Unclipped: step times are noisy both ways, and the median is not biased by it.
            self._sample.add(self._sample_excess + beyond)
            self._sample_excess = None

    @property
    def _plain_s(self) -> float:
        """A plain training step: after a plain step; while there is none, after any."""
        return (self._clean or self._any).median

    @property
    def _capture_s(self) -> float:
        """A gradient capture: its own time beyond a tick, and its spill into the next step.

        Until both sides of the spill are measured, it is taken to equal the capture's own
        time, as measured in docs/performance.md (every step captured leaves no plain step to
        compare with).
        """
        return self._grads_beyond_tick + self._spill_s

    @property
    def _grads_beyond_tick(self) -> float:
        return max(self._grads.median - self._tick.median, 0.0)

    @property
    def _spill_s(self) -> float:
        """What a gradient capture adds to the training step after it (cold caches)."""
        if self._clean and self._after_grads:  # noisy both ways; a spill never saves time
            return max(self._after_grads.median - self._clean.median, 0.0)
        return self._grads_beyond_tick

    @property
    def _over_budget(self) -> bool:
        """Recording took more than its share of everything since step 0 (spills included)."""
        assert self.budget is not None
        spent = self._spent + self._grads_taken * self._spill_s
        return spent > self.budget * self._trained

    def _adapt(self) -> None:
        assert self.budget is not None  # observe() adapts under a time budget only
        for window in (self._clean, self._after_grads, self._any, self._tick, self._grads):
            window.refresh()
        self._sample.refresh()
        available = self.budget * self._plain_s - self._tick.median
        sample_s = max(self._sample.median, 0.0)
        needed = self._capture_s + (sample_s / self.act_every if self.act_every else 0.0)
        factor = needed / available if available > 0 else math.inf
        if not math.isfinite(factor) or self._over_budget:
            factor = _MAX_FACTOR  # until the account is back within its share
        k = max(1, min(_MAX_FACTOR, math.ceil(factor)))
        if k == _MAX_FACTOR or self._grads_taken >= _MEASURED_GRADS:
            self.grad_every = k
        self.act_interval = self.act_every * k


_FLAGS = (False, True)
_KINDS = {(g, h, u): StepKind(g, h, u) for g in _FLAGS for h in _FLAGS for u in _FLAGS}
_PLAIN, _GRADS = StepKind.of(False, False, False), StepKind.of(True, False, False)
