"""Where a session's data comes from: a live recorder, a run it trains, or a log on disk.

A view needs the same five things of each (a name, a version that moves when new data lands,
a cheap copy to redraw from, the complete history, where it stands in a sentence), so each
kind answers them and nothing above this module asks which kind it holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from torch import nn

from ..errors import GradWidgetError
from ..history import History
from ..logs.reader import LogReader
from ..record.recorder import Recorder
from ..train.settings import RunState
from .runs import RunRecord
from .summary import RunSummary, summarize, summarize_history

__all__ = ["LiveSource", "LogSource", "RunSource", "Source", "SourceStatus"]

_END_TONES = {RunState.FINISHED: "ok", RunState.DIVERGED: "warn", RunState.FAILED: "error"}


@dataclass(frozen=True)
class SourceStatus:
    """Where a source stands, in one sentence.

    Attributes
    ----------
    text : str
        The sentence (``"baseline: step 120/600 · 410 steps/s · loss 2.3"``).
    tone : str
        ``"info"``, ``"ok"``, ``"warn"`` or ``"error"``.
    ended : bool
        No more data will come.
    step, total : int, int or None
        Progress, where a total is known.
    error : BaseException or None
        What made a run fail.
    """

    text: str
    tone: str = "info"
    ended: bool = False
    step: int = 0
    total: int | None = None
    error: BaseException | None = None


class Source(Protocol):
    """What a view reads of one stream of recorded data."""

    name: str

    @property
    def model(self) -> nn.Module | None:
        """The model recorded, where this process has it (a log has none)."""

    @property
    def version(self) -> int:
        """Advances whenever new data has landed."""

    def live(self) -> History:
        """A cheap copy to redraw from while data still comes."""

    def snapshot(self) -> History:
        """Everything recorded so far, complete."""

    def status(self) -> SourceStatus:
        """Where it stands now."""

    def summary(self, threshold: float) -> RunSummary:
        """Its row of the comparison table (``threshold``: the loss bar)."""


class LiveSource:
    """A recorder on a model the user trains in their own loop."""

    def __init__(self, recorder: Recorder, model: nn.Module | None, name: str) -> None:
        self.recorder, self.name, self._model = recorder, name, model

    @property
    def model(self) -> nn.Module | None:
        return self._model

    @property
    def version(self) -> int:
        return self.recorder.live.version

    def live(self) -> History:
        # Not recorder.history: that waits for device copies under the lock capture() takes.
        return self.recorder.live.snapshot()

    def snapshot(self) -> History:
        return self.recorder.history

    def status(self) -> SourceStatus:
        if self.recorder.closed:
            return SourceStatus(f"Your loop recorded {self.recorder.step} steps.", ended=True)
        return SourceStatus(f"Watching your loop: step {self.recorder.step}.")

    def summary(self, threshold: float) -> RunSummary:
        return summarize_history(self.name, (), self.snapshot(), math.nan, threshold)


class RunSource:
    """A run the session trains on a background thread."""

    def __init__(self, record: RunRecord) -> None:
        self.record, self.name = record, record.name

    @property
    def model(self) -> nn.Module | None:
        return self.record.model

    @property
    def version(self) -> int:
        recorder = self.record.run.recorder
        return -1 if recorder is None else recorder.live.version

    def live(self) -> History:
        recorder = self.record.run.recorder
        return History(()) if recorder is None else recorder.live.snapshot()

    def snapshot(self) -> History:
        return self.record.history

    def status(self) -> SourceStatus:
        run = self.record.run
        if run.state.ended:
            tone = _END_TONES.get(run.state, "info")
            return SourceStatus(run.message, tone, True, run.step, run.total_steps, run.error)
        total = "?" if run.total_steps is None else run.total_steps
        loss = "" if run.loss is None else f" · loss {run.loss:.3g}"
        text = f"{run.name}: step {run.step}/{total} · {run.steps_per_s:.0f} steps/s{loss}"
        return SourceStatus(text, step=run.step, total=run.total_steps)

    def summary(self, threshold: float) -> RunSummary:
        return summarize(self.record.run, self.record.remedies, threshold)


class LogSource:
    """A log a job writes on disk (``gw.Recorder(model, log_dir=...)``), read as it grows.

    A damaged log does not end the session: :meth:`poll` keeps what was read, stops reading
    that file, and :meth:`status` says what is wrong with it.
    """

    def __init__(self, name: str, path: Path, capacity: int, stale_s: float) -> None:
        self.name, self.path, self.stale_s = name, path, stale_s
        self.reader = LogReader(path, capacity)
        self.damage: str | None = None
        self._version = 0

    @property
    def model(self) -> nn.Module | None:
        return None

    @property
    def version(self) -> int:
        return self._version

    def poll(self) -> bool:
        """Read what the job committed since the last poll; True if anything new came."""
        if self.damage is not None:
            return False
        try:
            fresh = self.reader.poll() > 0
        except GradWidgetError as why:
            self.damage = str(why)
            return False
        self._version += fresh
        return fresh

    def live(self) -> History:
        return self.reader.history.snapshot()

    def snapshot(self) -> History:
        return self.reader.history.snapshot()

    def status(self) -> SourceStatus:
        try:
            state = self.reader.status()
        except GradWidgetError as why:
            self.damage = self.damage or str(why)
        if self.damage is not None:
            return SourceStatus(f"{self.name}: {self.damage}", "error", ended=True)
        stale = state.writer_gone or (state.idle_s >= self.stale_s and not state.finished)
        text = f"{self.name}: {state.text(self.stale_s)}"
        return SourceStatus(text, "warn" if stale else "info", state.finished, state.step or 0)

    def summary(self, threshold: float) -> RunSummary:
        return summarize_history(self.name, (), self.snapshot(), math.nan, threshold)

    def close(self) -> None:
        """Close the file (it stays on disk)."""
        self.reader.close()
