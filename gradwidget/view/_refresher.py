"""A background thread that calls ``tick`` at a fixed rate while there is something to show."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Refresher"]


class Refresher:
    """Call ``tick()`` every ``1 / hz`` seconds on a daemon thread, started on demand.

    ``tick`` returns False when it has nothing more to do; the thread then ends, unless
    :meth:`poke` was called since the previous tick (new data arrived meanwhile). So a panel
    has no thread while idle, and at most ``hz`` refreshes a second whatever the step rate.
    """

    def __init__(self, tick: Callable[[], bool], hz: float, name: str) -> None:
        if hz <= 0:
            raise ValueError(f"refresh_hz must be positive, got {hz}")
        self.tick, self.interval, self.name = tick, 1.0 / hz, name
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._poked = False

    def poke(self) -> None:
        """Make sure the thread runs; cheap enough to call on every training step."""
        with self._lock:
            self._poked = True
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            with self._lock:
                self._poked = False
            if self.tick():
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
