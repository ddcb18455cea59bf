"""The time budget's account: what recording took since step 0, the first captures included,
stays within the budget's share of the training, not only the rate the intervals set.

Driven by a simulated clock, so the figures are the test's own, not a machine's: plain steps of
1.4 ms (a Lightning step of a tiny MLP), a tick of 25 us, a gradient capture of 400 us, and a
first capture of 3 ms (it also finds the layer order).
"""

from __future__ import annotations

import numpy as np

from gradwidget.record._budget import _MAX_FACTOR, Schedule, StepKind

PLAIN_S, TICK_S, GRADS_S, FIRST_S = 1.4e-3, 25e-6, 400e-6, 3e-3
BUDGET = 0.03


def _simulate(steps: int) -> tuple[list[int], float, float]:
    """Captured steps, and seconds spent recording and training, as ``Recorder.capture``
    reports them to the schedule: quiet steps only tick, untimed."""
    schedule = Schedule(BUDGET, act_every=0)
    clock, spent, captured, quiet_until = 0.0, 0.0, [], 0
    for step in range(steps):
        clock += PLAIN_S  # the training step
        if step < quiet_until:
            clock, spent = clock + TICK_S, spent + TICK_S
            continue
        grads = schedule.grads_due(step, force=False)
        inside = FIRST_S if step == 0 else GRADS_S if grads else TICK_S
        entered, clock = clock, clock + inside
        spent += inside
        captured += [step] if grads else []
        schedule.observe(step, entered, clock, StepKind.of(grads, False, False))
        quiet_until = 0 if grads else schedule.quiet_until(step + 1)
    return captured, spent, steps * PLAIN_S


def test_the_first_captures_are_paid_for_before_the_rate_resumes() -> None:
    captured, _, _ = _simulate(3000)
    gaps = np.diff(captured)
    assert captured[:5] == [0, 2, 4, 6, 8]  # the captures that measure the costs
    # The rate alone would capture every 22 steps (375 us of capture against the 17 us a step
    # the budget leaves beside the tick); the first 4.6 ms are paid off first, at the widest.
    early = gaps[(np.array(captured[:-1]) >= 8) & (np.array(captured[:-1]) < 300)]
    assert len(early) >= 4 and set(early.tolist()) == {_MAX_FACTOR}
    late = gaps[np.array(captured[:-1]) >= 2000]
    assert len(late) >= 10 and late.max() < _MAX_FACTOR  # then the rate the budget allows


def test_a_long_run_spends_the_budget_and_no_more() -> None:
    _, spent, trained = _simulate(6000)
    assert spent <= 1.05 * BUDGET * trained
    assert spent >= 0.8 * BUDGET * trained  # and does not starve the charts either
