"""Session: the document every view draws. Its runs, its data sources, and what it can do.

Three ways to make one, one object for all of them:

* ``Session(model, data, **train_config)``: the session trains copies of ``model`` on a
  background thread (train, retrain with fixes, stop, automatic repair);
* ``Session.watching(model_or_recorder)``: the user trains in their own loop and calls
  ``session.capture(loss)`` (or a trainer callback does);
* ``Session.following(path)``: a job writes a log on disk; ``poll()`` reads what came.

A session imports no widget library, so everything it does runs and is tested without one.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from ..diagnose.findings import Finding, Thresholds
from ..diagnose.rules import diagnose
from ..errors import GradWidgetError
from ..history import History
from ..logs.reader import find_logs
from ..record._layers import find_layers
from ..record.recorder import Recorder
from ..remedies import LABELS, REGISTRY, apply_remedies, apply_settings, split
from ..train.settings import RunState, TrainConfig
from ..train.training import Run
from . import _tables
from .autofix import DEFAULT_BUDGET_S, MAX_TRIALS, Autofix
from .runs import RunRecord, unique_name
from .sources import LiveSource, LogSource, RunSource, Source, SourceStatus
from .summary import RunSummary, default_threshold

__all__ = ["OWN_LOOP_NAME", "Session"]

OWN_LOOP_NAME = "your training loop"
_CLOSE_WAIT_S = 10.0  # a run stops within a step; a step stuck longer is the model's bug
_WATCHED: weakref.WeakKeyDictionary[nn.Module, Session] = weakref.WeakKeyDictionary()


class Session:
    """The runs of one model and what can be done with them; no widgets.

    Parameters
    ----------
    model : torch.nn.Module
        Each run trains its own copy made from the weights ``model`` has now, so ``model``
        is never changed and every retrain starts from the same weights.
    data : Dataset, (X, y) or iterable of (x, y) batches
        Training data, as for :class:`gradwidget.Run`.
    thresholds : Thresholds, optional
        The diagnosis's limits.
    **train_config
        :class:`gradwidget.TrainConfig` fields for every run (``steps``, ``lr``, ``seed``...).
    """

    def __init__(
        self,
        model: nn.Module,
        data: Any,
        *,
        thresholds: Thresholds | None = None,
        **train_config: Any,
    ) -> None:
        if data is None:
            raise GradWidgetError(
                "A training session needs data: Session(model, data, ...). To watch your own "
                "loop use Session.watching(model); to follow a job's log, Session.following(path)."
            )
        self._setup(model, data, TrainConfig(**train_config), thresholds)

    def _setup(
        self, model: nn.Module | None, data: Any, config: TrainConfig, th: Thresholds | None
    ) -> None:
        self.model, self.data, self.config = model, data, config
        self.thresholds = th or Thresholds()
        self.runs: list[RunRecord] = []
        self.recorder: Recorder | None = None
        self.logs: dict[str, LogSource] = {}
        self._current: Run | None = None  # the latest run started
        self.search: Autofix | None = None  # the latest search for a fix
        self.shown: str | None = None
        self.closed = False
        self._hidden: set[str] = set()
        self._changes = 0  # sources added or removed (and what the removed ones had counted)
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.RLock()
        # A copy taken before any hook is added: every run starts from these weights. A watched
        # model is not copied (it may be large, and the user's loop owns its weights).
        self._initial = None if model is None or data is None else apply_remedies(model, ())

    @classmethod
    def watching(
        cls, model: nn.Module | Recorder, *, thresholds: Thresholds | None = None, **options: Any
    ) -> Session:
        """A session on your own training loop: call :meth:`capture` after ``backward()``.

        ``model`` may be a :class:`gradwidget.Recorder` you made; otherwise ``options`` are
        the Recorder's (``act_every``, ``capacity``, ``budget``...). One open watching
        session per model: two would hook it twice.
        """
        recorder, module = (model, model.model) if isinstance(model, Recorder) else (None, model)
        owner = _WATCHED.get(module)
        if owner is not None and not owner.closed and owner.recording:
            raise GradWidgetError(
                "This model is already watched by another open panel, and two panels would "
                "hook it twice. Close the other panel first (panel.close())."
            )
        session = cls.__new__(cls)
        act_every = options.get("act_every", 10)
        session._setup(module, None, TrainConfig(act_every=act_every), thresholds)
        session.recorder = recorder or Recorder(module, **options)
        session.shown = OWN_LOOP_NAME
        _WATCHED[module] = session
        return session

    @classmethod
    def following(cls, path: str | Path, *, capacity: int = 1024, stale_s: float = 5.0) -> Session:
        """A session on the log(s) a job writes at ``path`` (a run folder or a folder of
        them, each run side by side); :meth:`poll` reads what was committed since.

        Raises
        ------
        GradWidgetError
            No log there, not a gradwidget log, a newer format, or a damaged one.
        """
        files = find_logs(path)  # a clear error before anything is opened
        session = cls.__new__(cls)
        session._setup(None, None, TrainConfig(), None)
        for name, file in files.items():
            session.logs[name] = LogSource(name, file, capacity, stale_s)
        session.shown = next(iter(session.logs))
        session.poll()
        return session

    # -- what it is ------------------------------------------------------------------------

    @property
    def recording(self) -> bool:
        """A watching session whose recorder still hooks the model."""
        return self.recorder is not None and not self.recorder.closed

    @property
    def can_train(self) -> bool:
        """The session trains its own runs (it has data and is open)."""
        return self.data is not None and not self.closed

    @property
    def sources(self) -> dict[str, Source]:
        """Every stream of data by name, in order (runs removed from view left out)."""
        if self.recorder is not None:
            return {OWN_LOOP_NAME: LiveSource(self.recorder, self.model, OWN_LOOP_NAME)}
        found: dict[str, Source] = {r.name: RunSource(r) for r in self.runs}
        found.update(self.logs)
        return {name: s for name, s in found.items() if name not in self._hidden}

    def source(self, name: str | None = None) -> Source | None:
        """The source ``name`` (default: the one on show), or None."""
        return self.sources.get(name or self.shown or "")

    def show(self, name: str) -> None:
        """Put source ``name`` on show."""
        if name not in self.sources:
            raise GradWidgetError(f"No run named {name!r}: the runs are {list(self.sources)}.")
        self.shown = name
        self._notify()

    def history(self, name: str | None = None) -> History:
        """Everything recorded by source ``name`` (default: the one on show)."""
        source = self.source(name)
        return source.snapshot() if source is not None else History(())

    def histories(self) -> dict[str, History]:
        """Every source's complete history by name."""
        return {name: s.snapshot() for name, s in self.sources.items()}

    def findings(self, name: str | None = None) -> tuple[Finding, ...]:
        """The diagnosis of source ``name`` (default: the one on show)."""
        history = self.history(name)
        return tuple(diagnose(history, self.thresholds)) if len(history) else ()

    @property
    def version(self) -> int:
        """Grows whenever any source has new data or the set of sources changes."""
        return self._changes + sum(max(0, s.version) for s in self.sources.values())

    def subscribe(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (cheap, any thread) when data may have changed."""
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    # -- training ----------------------------------------------------------------------------

    def train(self) -> Run:
        """Start a baseline run from the initial weights (refused while another runs)."""
        self._refuse_while_searching()
        return self.launch((), steps=self.config.steps, label="baseline", role="run")

    def retrain(self, names: Iterable[str]) -> Run:
        """Start a run of the initial model with remedies ``names``, same config and seed.

        Model remedies build the run's model; training remedies (``clip_grad``, ``lower_lr``...)
        change its :class:`TrainConfig`.

        Raises
        ------
        GradWidgetError
            Nothing chosen, an unknown or rival name, a remedy that does not apply, or
            another run still going (one run at a time).
        """
        wanted = set(names)
        try:
            split(wanted)
        except ValueError as why:  # an unknown name, or two activations (inits, norms)
            raise GradWidgetError(str(why)) from None
        chosen = tuple(r.name for r in REGISTRY if r.name in wanted)  # the registry's order
        if not chosen:
            raise GradWidgetError("Choose at least one fix to retrain with.")
        label = " + ".join(LABELS[name] for name in chosen)
        self._refuse_while_searching()
        return self.launch(chosen, steps=self.config.steps, label=label, role="run")

    def launch(self, fixes: tuple[str, ...], *, steps: int, label: str, role: str) -> Run:
        """Start a run of ``steps`` steps with ``fixes``, from the initial weights and the
        same data order; ``role`` is ``"run"``, ``"trial"`` or ``"winner"``. The started run.
        The search for a fix launches its runs here too (so a search does not refuse them).
        """
        with self._lock:
            self._check_can_start()
            try:
                model_names, settings_names = split(fixes)
                config = replace(apply_settings(self.config, settings_names), steps=steps)
                model = self.remedied_model(model_names)
            except ValueError as why:
                raise GradWidgetError(str(why)) from None
            label = f"{label} (trial)" if role == "trial" else label
            name = unique_name(label, {r.name for r in self.runs})
            run = Run(model, self.data, config, name=name)
            self.runs.append(RunRecord(name, tuple(fixes), model, run, role))
            self._changes += 1
            self._current, self.shown = run, name
            run.start()
        self._notify()
        return run

    def autofix(
        self,
        *,
        budget_s: float = DEFAULT_BUDGET_S,
        trial_steps: int | None = None,
        max_trials: int = MAX_TRIALS,
    ) -> Autofix:
        """Start the search for a fix on a background thread; its handle.

        Diagnoses the baseline (trained first if there is none), tries the suggested fixes
        and their compatible combinations in short trials from the same initial weights and
        data order, and retrains the best for the full run. Every run joins :attr:`runs`
        (trials named "... (trial)"). ``handle.wait()`` gives the
        :class:`~gradwidget.session.autofix.AutofixResult`; ``stop()`` (or :meth:`stop`)
        ends it at any moment. ``budget_s`` caps the whole search.
        """
        with self._lock:
            self._refuse_while_searching()
            self._check_can_start()
            search = Autofix(
                self, budget_s=budget_s, trial_steps=trial_steps, max_trials=max_trials
            )
            self.search = search.start()
        self._notify()
        return search

    @property
    def searching(self) -> bool:
        """A search for a fix is under way."""
        return self.search is not None and not self.search.done

    def _check_can_start(self) -> None:
        if self.closed:
            raise GradWidgetError("This session is closed.")
        if self.data is None:
            raise GradWidgetError(_NO_DATA[self.recorder is not None])
        if self.active is not None:
            raise GradWidgetError(
                f"{self.active.name!r} is still running: press Stop first (one run at a time)."
            )

    def _refuse_while_searching(self) -> None:
        if self.searching:
            raise GradWidgetError("Find a fix is still searching: press Stop first.")

    @property
    def active(self) -> Run | None:
        """The run training now, or None."""
        run = self._current
        return run if run is not None and not run.state.ended else None

    def baseline(self) -> Run | None:
        """The latest run without fixes that trained to its end (or diverged), or None; a
        trial of the automatic repair is never a baseline."""
        done = [
            r.run
            for r in self.runs
            if not r.remedies and r.role in ("run", "baseline") and r.run.state in _TRAINED
        ]
        return done[-1] if done else None

    def remedied_model(self, names: Iterable[str]) -> nn.Module:
        """A copy of :attr:`initial_model` with model remedies ``names`` applied."""
        base = self.initial_model
        if base is None:
            raise GradWidgetError("A followed log has no model to fix: fix the job's model.")
        return apply_remedies(base, tuple(names), self.config.seed, self.config)

    @property
    def initial_model(self) -> nn.Module | None:
        """What fixes apply to: the copy every run starts from (do not train it), the watched
        model as it is now, or None when following a log."""
        return self._initial if self._initial is not None else self.model

    @property
    def layers(self) -> tuple[str, ...]:
        """The layers a chart of this session's next run shows, in registration order (its
        first step orders them by execution, most often the same); () for a followed log."""
        if self.recorder is not None:
            return self.recorder.layers
        model = self.initial_model
        return () if model is None else tuple(layer.name for layer in find_layers(model))

    def stop(self) -> Run | None:
        """Ask the search for a fix (if any) and the active run to stop after the current step
        (never blocks); the run."""
        if self.searching and self.search is not None:
            self.search.stop(timeout=0)
        run = self.active
        if run is not None:
            run.stop(timeout=0)
        return run

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no run is active (or ``timeout`` s); True if none is."""
        run = self._current
        if run is not None:
            run.join(timeout)
        if self.recorder is not None:
            self.recorder.flush()  # an own loop's last steps, still on their way to the host
        self._notify()
        return run is None or run.state.ended

    def capture(self, loss: Any = None, *, scaler: Any = None) -> None:
        """Own loop: record this step; call after ``loss.backward()``, before ``step()``."""
        if self.recorder is None:
            raise GradWidgetError(
                "This panel trains the model itself; capture() is for a panel made without "
                "data (GradPanel(model) or gw.watch(model)) around your own training loop."
            )
        self.recorder.capture(loss, scaler=scaler)
        self._notify()

    def poll(self) -> bool:
        """Followed logs: read what every job committed since; True if anything came."""
        with self._lock:
            fresh = sum(log.poll() for log in self.logs.values()) > 0
        return fresh

    @property
    def polling(self) -> bool:
        """Some followed log may still grow: keep polling."""
        return any(not log.status().ended for log in self.logs.values())

    def status(self) -> SourceStatus:
        """Where things stand in one sentence: every followed log, else the active run, else
        the source on show."""
        if self.logs:
            states = [log.status() for log in self.logs.values()]
            tone = next((s.tone for s in states if s.tone != "info"), "info")
            text = " · ".join(s.text for s in states)
            return SourceStatus(text, tone, all(s.ended for s in states))
        source = self.source(self.active.name if self.active is not None else None)
        status = source.status() if source is not None else SourceStatus(_IDLE[self.can_train])
        if self.search is None or (self.search.done and self.search.result is None):
            return status
        if self.search.done and self.search.result is not None:
            return SourceStatus(self.search.result.message, "ok", ended=True)
        return SourceStatus(self.search.progress, "info", False, status.step, status.total)

    def remove_run(self, name: str) -> None:
        """Leave run ``name`` out of the comparison (not while it is running)."""
        with self._lock:
            source = self.sources.get(name)
            if source is None or (self.active is not None and self.active.name == name):
                why = "is still running: stop it first" if source else "does not exist"
                raise GradWidgetError(f"Run {name!r} {why}.")
            self._changes += 1 + max(0, source.version)
            self.runs = [r for r in self.runs if r.name != name]
            if name in self.logs:
                self._hidden.add(name)
            if self.shown == name:
                self.shown = next(iter(self.sources), None)
        self._notify()

    # -- results -----------------------------------------------------------------------------

    def summaries(self, loss_threshold: float | None = None) -> list[RunSummary]:
        """One row per source; the loss bar defaults to half the first source's first loss."""
        sources = list(self.sources.values())
        if loss_threshold is None:
            first = sources[0].snapshot() if sources else History(())
            loss_threshold = default_threshold(first)
        return [s.summary(loss_threshold) for s in sources]

    def comparison(self, loss_threshold: float | None = None) -> Any:
        """One row per run: a DataFrame of :class:`gradwidget.session.summary.RunSummary` fields.

        ``steps_to_threshold`` counts steps until the loss reaches ``loss_threshold``, the
        same bar for every run (default: half the first run's first loss).
        """
        return _tables.frame(self.summaries(loss_threshold))

    def export(self, path: str | Path) -> list[Path]:
        """Write each source's history and the comparison table; the paths written.

        ``path`` ending in ``.json`` or ``.csv`` gives ``<stem>-<run>.<suffix>`` files next to
        it; any other ``path`` is a folder of ``<run>.json`` files. Both add a comparison CSV.
        """
        return _tables.write(path, self.histories(), self.summaries())

    def settings_rows(self) -> list[tuple[str, str]]:
        """(setting, value) pairs a reader needs to reproduce the runs."""
        return _tables.settings_rows(self)

    def close(self) -> None:
        """Stop the active run, remove every hook, close the logs. Safe to call again."""
        with self._lock:
            if self.closed:
                return
            self.closed = True
        if self.search is not None:
            self.search.stop(timeout=_CLOSE_WAIT_S)
        active = self.active
        if active is not None:
            active.stop(timeout=_CLOSE_WAIT_S)
        for record in self.runs:
            record.run.join(timeout=_CLOSE_WAIT_S)
        if self.recorder is not None and self.model is not None:
            self.recorder.close()
            _WATCHED.pop(self.model, None)
        for log in self.logs.values():
            log.close()

    def __repr__(self) -> str:
        kind = "following" if self.logs else "watching" if self.recorder else "training"
        return f"<Session {kind}: {len(self.sources)} source(s), shown={self.shown!r}>"


_TRAINED = (RunState.FINISHED, RunState.DIVERGED)
_IDLE = {True: "Ready: press Train.", False: "Nothing recorded yet."}
_NO_DATA = {
    True: "This panel watches your own loop: call panel.capture(loss) after loss.backward().",
    False: "This session follows a log: it has no data to train on.",
}
