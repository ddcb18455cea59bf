"""A background thread that calls ``tick`` while there is something to show, at a rate that
the tick's own cost keeps within a small share of one core, and never less than once a second."""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable

__all__ = ["Refresher"]

# The most of one core the redraws may take: training shares the process (and, through the
# GIL, the interpreter) with them. Measured (docs/performance.md): a 10-layer panel's redraw
# costs 3-5 ms of CPU, a 500-layer one 14-18 ms; at a fixed 10 Hz that was 4-18 % of a core,
# and panel-managed training ran at 0.76x the plain loop's speed.
_SHARE = 0.01
# The longest wait between two redraws, whatever they cost: a chart that moves less than once
# a second no longer reads as live. At 500 layers (12-18 ms a redraw) that is 1.2-1.8 % of a
# core; only such panels reach it.
_MAX_WAIT_S = 1.0
# What a redraw is taken to cost before one is measured: a 10-layer panel's first (which also
# runs the diagnosis) costs 4-6 ms. At 1 % of a core the first chart then comes half a second
# in, not at once: a run shorter than that is drawn once, as it ends, and on a 300-step
# Lightning run of 1.4 ms steps an early first redraw had cost 2.5 % of the run.
_FIRST_COST_S = 0.005


class Refresher:
    """Call ``tick()`` every ``1 / hz`` seconds on a daemon thread, started on demand.

    ``tick`` returns False when it has nothing more to do; the thread then ends, unless
    :meth:`poke` was called since the previous tick (new data arrived meanwhile). So a panel
    has no thread while idle, and at most ``hz`` refreshes a second whatever the step rate:
    fewer where a tick costs more than ``_SHARE`` of the time between two (the interval grows
    to the tick's recent CPU time over ``_SHARE``), but at least one a second.
    """

    def __init__(self, tick: Callable[[], bool], hz: float, name: str) -> None:
        if hz <= 0:
            raise ValueError(f"refresh_hz must be positive, got {hz}")
        self.tick, self.interval, self.name = tick, 1.0 / hz, name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poked = False
        # CPU seconds of the last ticks. Their mean, not their median: a redraw that also
        # renews the diagnosis or the table costs 10-20 ms against 3-4 ms for the charts
        # alone, and a median would leave those out of the share.
        self._costs: deque[float] = deque(maxlen=5)

    @property
    def wait_s(self) -> float:
        """Seconds between two ticks: the rate asked for, or longer (up to a second) where
        ticks are costly."""
        cost = statistics.fmean(self._costs) if self._costs else _FIRST_COST_S
        return max(self.interval, min(cost / _SHARE - cost, _MAX_WAIT_S))

    def poke(self) -> None:
        """Make sure the thread runs; cheap enough to call on every training step."""
        with self._lock:
            self._poked = True
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.wait_s):
            with self._lock:
                self._poked = False
            began = time.thread_time()
            more = self.tick()
            self._costs.append(time.thread_time() - began)
            if more:
                continue
            with self._lock:
                if not self._poked:
                    self._thread = None
                    return

    def stop(self, timeout: float = 5.0) -> None:
        """End the thread for good and wait for it."""
        self._stop.set()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
