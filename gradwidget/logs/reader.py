"""Read the on-disk log of :mod:`gradwidget.logs.writer`, whole or while a job writes it."""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import GradWidgetError
from ..history import History
from .writer import APPLICATION_ID, FILENAME, FORMAT_VERSION

__all__ = ["LayerInfo", "LogReader", "LogStatus", "find_logs", "open_log"]

_BATCH = 50_000  # rows read per query: a long log catches up in a few polls, never one huge one


@dataclass(frozen=True)
class LayerInfo:
    """One layer as the log describes it: name, module type, number of parameters."""

    name: str
    kind: str
    params: int


@dataclass(frozen=True)
class LogStatus:
    """Where the job writing a log stands, seen from a reader.

    Attributes
    ----------
    step : int or None
        The newest step read (None: nothing yet).
    finished : bool
        The writer closed the log (the recorder was closed or the script ended normally).
    idle_s : float
        Seconds since this reader last found new data.
    writer_gone : bool
        The writing process has ended without closing the log (known on the same host only).
    """

    step: int | None
    finished: bool
    idle_s: float
    writer_gone: bool

    def text(self, stale_s: float = 5.0) -> str:
        """One sentence: running, finished, or how long no new data has come and why."""
        at = "no step yet" if self.step is None else f"step {self.step}"
        if self.finished:
            return f"finished at {at}"
        if self.writer_gone:
            gone = "the writer stopped without closing the log"
            return f"{gone}: no new data for {self.idle_s:.0f} s ({at})"
        if self.idle_s >= stale_s:
            return f"no new data for {self.idle_s:.0f} s ({at})"
        return f"running: {at}" if self.step is not None else "waiting for the first step"


def find_logs(path: str | Path) -> dict[str, Path]:
    """The logs at ``path``: ``{run name: file}`` for a run's folder, its file, or a folder of
    run folders (each run compared side by side).

    Raises
    ------
    GradWidgetError
        ``path`` does not exist, or holds no log at all.
    """
    path = Path(path)
    if not path.exists():
        raise GradWidgetError(
            f"{str(path)!r} does not exist. Pass the log_dir a job writes to "
            "(gw.Recorder(model, log_dir=...)), or a folder of such run folders."
        )
    if path.is_file():
        return {path.parent.name or str(path): path}
    if (path / FILENAME).is_file():
        return {path.name or str(path): path / FILENAME}
    runs = {d.name: d / FILENAME for d in sorted(path.iterdir()) if (d / FILENAME).is_file()}
    if not runs:
        raise GradWidgetError(
            f"{str(path)!r} holds no gradwidget log: neither {FILENAME} nor run folders with "
            f"one. Start the job with gw.Recorder(model, log_dir={str(path)!r}) first, or pass "
            "the folder it writes to."
        )
    return runs


def open_log(path: str | Path, capacity: int = 1024) -> History:
    """The :class:`~gradwidget.History` in the log at ``path`` (a run folder or its file).

    Works while the job still writes (everything committed so far) and after it was killed
    (everything up to its last flush).

    Raises
    ------
    GradWidgetError
        No log there, several runs there, not a gradwidget log, or a newer format.
    """
    runs = find_logs(path)
    if len(runs) > 1:
        names = ", ".join(runs)
        raise GradWidgetError(
            f"{str(path)!r} holds {len(runs)} runs ({names}): open one of them, e.g. "
            f"gw.open_log({str(Path(path) / next(iter(runs)))!r}), or follow them all with "
            "GradPanel.follow."
        )
    reader = LogReader(next(iter(runs.values())), capacity)
    try:
        while reader.poll() == _BATCH:
            pass
        return reader.history
    finally:
        reader.close()


class LogReader:
    """Read a log incrementally: each :meth:`poll` appends the rows committed since the last.

    Parameters
    ----------
    path : str or Path
        The log file (``<log_dir>/gradwidget.db``).
    capacity : int
        Buckets per series of :attr:`history` (memory stays bounded however long the job).

    Attributes
    ----------
    history : History
        Everything read so far (its ``version`` advances with each poll that found rows).
    layers : tuple of LayerInfo
        Name, module type and parameter count of each layer (empty until the first capture).
    """

    def __init__(self, path: str | Path, capacity: int = 1024) -> None:
        self.path = Path(path)
        self.capacity = capacity
        self._db = _connect(self.path)
        self.layers: tuple[LayerInfo, ...] = ()
        self.history = History((), capacity)
        self._series: dict[int, str] = {}
        self._cursor = 0  # rowid of the newest point read
        self._step: int | None = None
        self._seen_at = time.monotonic()
        self._meta = dict(self._read("SELECT key, value FROM meta"))

    def poll(self) -> int:
        """Read what was committed since the last poll; the number of points read.

        Raises
        ------
        GradWidgetError
            The log is damaged (a missing table, a step that is not an integer, a truncated
            data blob): the message names the file and the fault. What was read stays.
        """
        if not self.layers and not self._read_layers():
            return 0
        rows = self._read(
            "SELECT rowid, series, step, data FROM points WHERE rowid > ? ORDER BY rowid LIMIT ?",
            (self._cursor, _BATCH),
        )
        for rowid, sid, step, data in rows:
            name = self._series.get(sid) or self._series_name(sid)
            self.history.append(name, step, self._values(name, step, data))
            self._cursor, self._step = rowid, step
        if rows:
            self._seen_at = time.monotonic()
        return len(rows)

    def status(self) -> LogStatus:
        """Where the writer stands now (reads the log's ``finished`` mark)."""
        finished = self._read("SELECT 1 FROM meta WHERE key = 'finished'")
        idle = time.monotonic() - self._seen_at
        return LogStatus(self._step, bool(finished), idle, self._writer_gone())

    def close(self) -> None:
        """Close the connection (the file is left as it is)."""
        self._db.close()

    def _read_layers(self) -> bool:
        found = self._read("SELECT name, kind, params FROM layers ORDER BY idx")
        self.layers = tuple(LayerInfo(*row) for row in found)
        if self.layers:
            self.history = History(tuple(layer.name for layer in self.layers), self.capacity)
        return bool(self.layers)

    def _series_name(self, sid: int) -> str:
        self._series = dict(self._read("SELECT id, name FROM series"))
        if sid not in self._series:
            raise self._damaged(f"a point refers to series {sid}, which the log does not name")
        return self._series[sid]

    def _values(self, name: str, step: object, data: object) -> np.ndarray:
        """A point's float32 values, after checking the row is what the writer writes."""
        if not isinstance(step, int):
            raise self._damaged(f"a step of {name!r} is {step!r}, not an integer")
        if not isinstance(data, bytes) or len(data) % 4:
            size = len(data) if isinstance(data, bytes) else type(data).__name__
            raise self._damaged(f"the data of {name!r} at step {step} is truncated ({size} bytes)")
        return np.frombuffer(data, "<f4")

    def _read(self, query: str, args: tuple = ()) -> list:
        try:
            return self._db.execute(query, args).fetchall()
        except sqlite3.DatabaseError as why:  # a missing table, a corrupt page
            raise self._damaged(str(why)) from None

    def _damaged(self, fault: str) -> GradWidgetError:
        return GradWidgetError(
            f"The log {str(self.path)!r} is damaged: {fault}. What was read before is kept; "
            "nothing after it can be read. Rerun the job to write a new log."
        )

    def _writer_gone(self) -> bool:
        """True only when the writer ran on this host and its process no longer exists."""
        if self._meta.get("host") != socket.gethostname():
            return False
        try:
            os.kill(int(self._meta["pid"]), 0)
        except ProcessLookupError:
            return True
        except (PermissionError, KeyError, ValueError):
            return False
        return False


def _connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to a log, after checking that it is one we can read."""
    if not path.is_file():
        raise GradWidgetError(f"No gradwidget log at {str(path)!r}: the file does not exist.")
    try:
        # check_same_thread=False: a view polls from its refresher thread, under its own lock.
        db = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
        app, version = (
            db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("application_id", "user_version")
        )
    except sqlite3.DatabaseError as why:
        raise GradWidgetError(
            f"{str(path)!r} is not a gradwidget log ({why}). Pass the log_dir a job writes to."
        ) from None
    if app != APPLICATION_ID:
        db.close()
        raise GradWidgetError(
            f"{str(path)!r} is not a gradwidget log (or its writer has not created it yet). "
            "Pass the log_dir given to gw.Recorder(model, log_dir=...)."
        )
    if version > FORMAT_VERSION:
        db.close()
        raise GradWidgetError(
            f"{str(path)!r} was written by a newer gradwidget (log format {version}; this "
            f"version reads up to {FORMAT_VERSION}). Upgrade gradwidget to read it."
        )
    return db
