"""Follow a job's on-disk log live: the panel's charts and diagnosis, runs side by side.

The job (``torchrun`` or any script) writes with ``gw.Recorder(model, log_dir=...)``; this view
polls the log from a refresher thread, appends what was committed since the last poll to each
run's bounded History, and redraws the same :class:`LiveCharts` and :class:`CompareView` the
panel uses. When a writer stops, the status line says for how long no new data has come.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path

import ipywidgets as w

from ..diagnose.rules import Thresholds
from ..history import History
from ..logs.reader import LogReader, LogStatus, find_logs
from ..train.summary import default_threshold, summarize_history
from ._refresher import Refresher
from ._widgets import close_tree
from .compare import CompareView
from .live import LiveCharts
from .snapshot import Snapshot, picture
from .status import StatusBar

__all__ = ["FollowView"]


class FollowView(w.VBox):
    """A live view of the log(s) at ``path`` (css ``gw-panel gw-follow``).

    Parameters
    ----------
    path : str or Path
        A run's ``log_dir`` (one run), or a folder of run folders (each run side by side; the
        charts show the one chosen above them). Runs that start later are not picked up:
        follow the folder again.
    refresh_hz : float
        Polls of the log per second.
    stale_s : float
        After this many seconds without new data the status says so.
    capacity : int
        Buckets per series kept in memory per run, however long the job.

    Attributes
    ----------
    version : int
        Advances whenever a poll brought new data (tests and pollers watch it).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        refresh_hz: float = 2.0,
        stale_s: float = 5.0,
        capacity: int = 1024,
    ) -> None:
        files = find_logs(path)  # a clear error before any widget exists
        self.readers = {name: LogReader(file, capacity) for name, file in files.items()}
        self.stale_s = stale_s
        self.version = 0
        self._lock = threading.Lock()
        self._closed = False
        self._hidden: set[str] = set()  # runs removed from the comparison
        self._statuses: dict[str, LogStatus] = {}
        self.status = StatusBar()
        self.thresholds = Thresholds()
        self.live = LiveCharts(self.thresholds)
        self.chooser = w.ToggleButtons(options=list(self.readers))
        self.chooser.observe(self._on_choice, names="value")
        self.compare = CompareView(self._drop)
        for name in self.readers:  # widgets made here, on the kernel's thread
            self.compare.add_run(name)
        several = len(self.readers) > 1
        parts = [self.status, self.chooser, self.live, self.compare] if several else None
        super().__init__(parts or [self.status, self.live])
        self.add_class("gw-panel")  # the panel, following a log
        self.add_class("gw-follow")
        self._refresher = Refresher(self._tick, refresh_hz, "gradwidget-follow")
        self.poll()
        self._refresher.poke()

    @property
    def shown(self) -> str:
        """Name of the run whose charts and diagnosis are on show."""
        return self.chooser.value

    def poll(self) -> bool:
        """Read what every log committed since the last poll and redraw; True if any new."""
        with self._lock:
            if self._closed:
                return False
            fresh = sum(reader.poll() for reader in self.readers.values()) > 0
            if fresh:
                self.version += 1
            self._statuses = {name: r.status() for name, r in self.readers.items()}
            self._draw(fresh)
            return fresh

    def history(self, name: str | None = None) -> History:
        """A snapshot of run ``name`` (default: the one on show)."""
        return self.readers[name or self.shown].history.snapshot()

    def snapshot(self, dpi: int = 100) -> Snapshot:
        """A PNG of the followed runs (needs ``gradwidget[snapshot]``); works after close()."""
        with self._lock:
            kept = [name for name in self.readers if name not in self._hidden]
            shown = {name: self.readers[name].history.snapshot() for name in kept}
        return picture(shown, self.thresholds, dpi)

    def close(self) -> None:
        """Stop polling, close the logs (the files stay) and every widget."""
        if "_refresher" not in self.__dict__:  # __init__ raised; ipywidgets' __del__ calls us
            return
        with self._lock:
            self._closed = True
        self._refresher.stop()
        for reader in self.readers.values():
            reader.close()
        close_tree(self)

    def _tick(self) -> bool:
        self.poll()
        # Poll until every log is closed: even a writer that looks gone (its pid is checked on
        # this host's name only) may be a live one in another container sharing the folder.
        return not self._closed and not all(s.finished for s in self._statuses.values())

    def _draw(self, fresh: bool) -> None:
        shown = self._statuses[self.shown]
        if fresh or shown.finished:
            self.live.draw(self.history(), final=shown.finished)
            if len(self.readers) > 1:
                self._update_compare()
        self._say(self._statuses)

    def _say(self, statuses: dict[str, LogStatus]) -> None:
        texts = [f"{name}: {s.text(self.stale_s)}" for name, s in statuses.items()]
        stale = any(s.writer_gone or (s.idle_s >= self.stale_s and not s.finished)
                    for s in statuses.values())  # fmt: skip
        self.status.say(" · ".join(texts), "warn" if stale else "info")

    def _update_compare(self) -> None:
        histories = {n: self.history(n) for n in self.readers if n not in self._hidden}
        bar = default_threshold(next(iter(histories.values()))) if histories else math.nan
        rows = [summarize_history(n, (), h, math.nan, bar) for n, h in histories.items()]
        self.compare.update(histories, rows)

    def _on_choice(self, _change: object) -> None:
        self.live.restart()
        with self._lock:
            if not self._closed:
                self._draw(fresh=True)

    def _drop(self, name: str) -> None:
        """× on a run's small chart: leave it out of the comparison (its log stays open)."""
        with self._lock:
            self._hidden.add(name)
            self._update_compare()
