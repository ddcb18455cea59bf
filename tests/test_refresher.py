"""The panel's refresher: redraws at the rate asked for, spaced further when they are costly."""

from __future__ import annotations

import time

from gradwidget.view._refresher import Refresher


def _run(tick_cpu_s: float, hz: float, seconds: float) -> int:
    """Ticks made in ``seconds`` by a refresher whose tick burns ``tick_cpu_s`` of CPU."""
    return len(_times(tick_cpu_s, hz, seconds))


def _times(tick_cpu_s: float, hz: float, seconds: float) -> list[float]:
    """When each tick came, in seconds since the first poke."""
    calls = []

    def tick() -> bool:
        calls.append(time.monotonic())
        end = time.thread_time() + tick_cpu_s
        while time.thread_time() < end:
            pass
        return True  # always more to show: only the spacing ends a tick

    refresher = Refresher(tick, hz, "test-refresher")
    began = time.monotonic()
    refresher.poke()
    time.sleep(seconds)
    refresher.stop()
    return [t - began for t in calls]


def test_costly_ticks_take_at_most_a_small_share_of_a_core() -> None:
    # 2 ms of CPU a tick at 0.5 % of a core: one every 0.4 s after the first at 0.5 s, so 5 or
    # 6 in 2.6 s (100 a second asked for: without the spacing about 200; at 1 %, 10 or 11)
    assert 4 <= _run(0.002, hz=100.0, seconds=2.6) <= 7


def test_costly_ticks_still_come_once_a_second() -> None:
    # 50 ms a tick would be one every 10 s at 0.5 % of a core (1 in these 3.5 s); the panel
    # must stay live, so the wait stops at one second: ticks near 0.5, 1.5 and 2.6 s
    assert _run(0.05, hz=100.0, seconds=3.5) >= 3


def test_cheap_ticks_keep_the_rate_asked_for() -> None:
    times = _times(0.0, hz=20.0, seconds=2.0)
    # the first tick, whose cost is not known yet, comes half a second in
    assert 0.45 <= times[0] <= 0.8
    # then, measured cheap, 20 a second
    assert 12 <= len([t for t in times if times[0] < t <= times[0] + 1.0]) <= 21
