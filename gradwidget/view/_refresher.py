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
# and panel-managed training ran at 0.76x the plain loop's speed. At 1 % a Hugging Face run of
# a small GPT-2 (2-3 ms a redraw) still paid 1 % for 4 redraws a second; 2 read as live.
_SHARE = 0.005
# The longest wait between two redraws, whatever they cost: a chart that moves less than once
# a second no longer reads as live. At 500 layers (12-18 ms a redraw) that is 1.2-1.8 % of a
# core; only such panels reach it.
_MAX_WAIT_S = 1.0
# The wait before the first redraw, whose cost is not known yet: half a second, so a run
# shorter than that is drawn once, as it ends (on a 300-step Lightning run of 1.4 ms steps a
# first redraw at 0.1 s cost 2.5 % of the run), and a longer one shows its charts at once.
_FIRST_WAIT_S = 0.5


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
        if not self._costs:
            return max(self.interval, _FIRST_WAIT_S)
        cost = statistics.fmean(self._costs)
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
