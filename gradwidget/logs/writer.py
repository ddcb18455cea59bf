"""An on-disk log of what a recorder records, readable while the job still writes it.

The store is SQLite (standard library) in WAL mode: one writer and any number of readers at
once, each reader seeing a consistent snapshot, no home-made format. The writer keeps points
in memory and commits them every ``flush_s`` seconds (and on close); a committed transaction
survives the writer being killed (``kill -9``), so a dead job leaves a readable log up to its
last flush. ``synchronous=NORMAL`` skips the fsync per commit: only a crash of the machine
itself (not of the process) can lose the last commits.

Disk use grows with the run: one row per point, its values as float32. Measured: about
``40 + 8.4 * L`` bytes per captured step for ``L`` layers (loss, grad_norm, nonfinite; 124 B for
10 layers, so 12 MB per 100,000 steps), plus about as much per sampled step for the update
ratios and activation statistics.
Readers keep their own bounded :class:`~gradwidget.History`, so following a long job does not
grow memory.

Layout: ``<log_dir>/gradwidget.db``, tables ``meta``, ``layers`` (name, module type, number of
parameters), ``series`` (name, width) and ``points`` (series, step, float32 blob). The format
version is SQLite's ``user_version``; a reader refuses a newer one.
"""

from __future__ import annotations

import atexit
import os
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import GradWidgetError
from ..history import History

__all__ = ["FILENAME", "FORMAT_VERSION", "LogWriter"]

FILENAME = "gradwidget.db"
FORMAT_VERSION = 1
APPLICATION_ID = 0x67774C47  # "gwLG": tells our files from other SQLite databases

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE layers (idx INTEGER PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL,
                     params INTEGER NOT NULL);
CREATE TABLE series (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, width INTEGER NOT NULL);
CREATE TABLE points (series INTEGER NOT NULL, step INTEGER NOT NULL, data BLOB NOT NULL);
"""


class LogWriter:
    """Append a recorder's points to ``<folder>/gradwidget.db``.

    Parameters
    ----------
    folder : str or Path
        The run's folder (created if missing). It must not already hold a log: each run
        writes its own folder, e.g. ``runs/exp1``, ``runs/exp2``.
    flush_s : float
        Seconds between commits: the most a killed writer loses and the main part of what a
        follower waits for.

    Notes
    -----
    :class:`~gradwidget.Recorder` makes one for ``log_dir=``, calls :meth:`start` with its
    layers at the first capture and :meth:`close` on close. The commit runs on the appending
    (training) thread; in WAL mode without an fsync it costs tens of microseconds.
    """

    def __init__(self, folder: str | Path, *, flush_s: float = 0.5) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise GradWidgetError(
                f"log_dir {str(self.folder)!r} is a file; give a folder for the run's log "
                "(e.g. 'runs/exp1')."
            )
        self.path = self.folder / FILENAME
        self.folder.mkdir(parents=True, exist_ok=True)
        self.flush_s = flush_s
        self._lock = threading.Lock()
        self._ids: dict[str, int] = {}
        self._new_series: list[tuple[int, str, int]] = []
        self._rows: list[tuple[int, int, bytes]] = []
        self._flushed_at = time.monotonic()
        self._db: sqlite3.Connection | None = _create(self.path)
        atexit.register(self.close)  # a script that never closes its recorder keeps its tail

    def start(self, layers: Any, history: History) -> None:
        """Store the layers (objects with ``name``, ``module``, ``params``) and follow
        ``history``: every point appended to it from now on goes to the log."""
        rows = [
            (i, layer.name, _kind(layer.module), sum(p.numel() for p in layer.params))
            for i, layer in enumerate(layers)
        ]
        with self._lock, _transaction(self._open()) as db:
            db.execute("DELETE FROM layers")
            db.executemany("INSERT INTO layers VALUES (?, ?, ?, ?)", rows)
        history.add_listener(self.append)

    def append(self, name: str, step: int, row: np.ndarray) -> None:
        """Buffer one point; commit the buffer when ``flush_s`` has passed since the last."""
        with self._lock:
            sid = self._ids.get(name)
            if sid is None:
                sid = self._ids[name] = len(self._ids) + 1
                self._new_series.append((sid, name, row.size))
            self._rows.append((sid, step, np.asarray(row, "<f4").tobytes()))
            if time.monotonic() - self._flushed_at >= self.flush_s:
                self._flush()

    def flush(self) -> None:
        """Commit every buffered point now."""
        with self._lock:
            self._flush()

    def close(self) -> None:
        """Commit what is left and mark the log finished. Safe to call more than once."""
        with self._lock:
            if self._db is None:
                return
            self._flush()
            with _transaction(self._db) as db:
                db.execute(
                    "INSERT OR REPLACE INTO meta VALUES ('finished', ?)", (str(time.time()),)
                )
            self._db.close()
            self._db = None
        atexit.unregister(self.close)

    def _flush(self) -> None:
        self._flushed_at = time.monotonic()
        if not self._rows and not self._new_series:
            return
        with _transaction(self._open()) as db:
            db.executemany("INSERT INTO series VALUES (?, ?, ?)", self._new_series)
            db.executemany("INSERT INTO points VALUES (?, ?, ?)", self._rows)
        self._new_series, self._rows = [], []

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            raise GradWidgetError(f"The log {str(self.path)!r} is closed.")
        return self._db


def _kind(module: Any) -> str:
    """The module's class name; ``Linear`` rather than the ``FSDPLinear`` fully_shard makes."""
    name = type(module).__name__
    bases = {base.__name__ for base in type(module).__mro__[1:]}
    return name[4:] if name.startswith("FSDP") and name[4:] in bases else name


def _create(path: Path) -> sqlite3.Connection:
    """A new log file: our application id and format version, the schema, then WAL mode.

    Made complete under a temporary name and linked into place, so a reader never finds a
    half-made log, and two jobs can never share one (the link fails if the name is taken).
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    db = sqlite3.connect(temporary, isolation_level=None)
    meta = {"pid": str(os.getpid()), "host": socket.gethostname(), "created": str(time.time())}
    db.executescript(
        f"PRAGMA application_id={APPLICATION_ID}; PRAGMA user_version={FORMAT_VERSION};{_SCHEMA}"
    )
    db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
    db.close()
    try:
        _place(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    # check_same_thread=False: a managed run appends from its thread, close() may come from
    # another; the writer's lock serialises every use of the connection.
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def _place(temporary: Path, path: Path) -> None:
    """Give the finished file its name, refusing a name already taken."""
    taken = GradWidgetError(
        f"{str(path.parent)!r} already holds a gradwidget log from another run. Give each run "
        f"its own log_dir (e.g. 'runs/exp2'), or delete {str(path)!r}."
    )
    try:
        os.link(temporary, path)  # atomic and exclusive
    except FileExistsError:
        raise taken from None
    except OSError:  # a file system without hard links: check, then rename
        if path.exists():
            raise taken from None
        os.replace(temporary, path)


class _transaction:
    """``BEGIN`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, kind: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if kind is not None else "COMMIT")
