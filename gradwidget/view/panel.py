"""GradPanel: a view of a :class:`~gradwidget.session.Session`; layout and redraws only.

Three ways in, one panel. ``GradPanel(model, data)`` trains copies of the model (Train / Stop
/ Retrain with fixes); ``GradPanel(model)`` or ``watch(model)`` watches the user's own loop
(``panel.capture(loss)`` after ``loss.backward()``); ``GradPanel.follow(path)`` follows a
job's log on disk. Each builds a session, and everything the panel does is the session's;
a refresher thread redraws at most ``refresh_hz`` times a second (fewer where a redraw is
costly: at most 0.5 % of a core, but once a second) from the source on show.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import ipywidgets as w
from torch import nn

from ..errors import GradWidgetError
from ..history import History
from ..remedies import split
from ..session import RunRecord, Session
from ..session.autofix import MAX_TRIALS
from ..train.training import Run
from . import report
from ._refresher import Refresher
from ._widgets import close_tree
from .compare import CompareView
from .fixes import FixBar
from .live import LiveCharts
from .snapshot import Snapshot, take
from .status import StatusBar

__all__ = ["GradPanel", "RunRecord", "watch"]

_NO_DATA_TO_FIX = (
    "Find a fix trains copies of your model, and this panel has no data of its own: "
    "panel.autofix(data, loss_fn=...) with your training data (a Dataset, (X, y) or a DataLoader)."
)
_OWN_LOOP = "This panel watches your own loop: call panel.capture(loss) after loss.backward()."


class GradPanel(w.VBox):
    """Live per-layer gradient norms, diagnosis and fixes for a PyTorch model.

    Parameters
    ----------
    model : torch.nn.Module or Session
        The model, or a :class:`~gradwidget.session.Session` made beforehand. With ``data``,
        each run trains its own copy made from the weights ``model`` has now, so ``model`` is
        never changed and every retrain starts from the same weights; get trained models from
        ``panel.runs``. Without ``data``, the panel watches ``model`` as you train it (one
        open panel per model in this mode).
    data : Dataset, (X, y) or iterable of (x, y) batches, optional
        Training data, as for :class:`gradwidget.Run`; leave out to train in your own loop.
    loss_fn, optimizer, lr, steps, batch_size, seed, act_every
        The :class:`gradwidget.TrainConfig` of every run (same seed: same data order).
    refresh_hz : float
        Most chart updates per second, whatever the training speed; redraws that cost more
        are spaced further apart, so that they take at most 0.5 % of a core, but come at least
        once a second.
    recorder_options : dict, optional
        Own loop only: further :class:`gradwidget.Recorder` options (``capacity``, ``budget``).
    """

    def __init__(
        self,
        model: nn.Module | Session,
        data: Any = None,
        *,
        loss_fn: Any = None,
        optimizer: Any = "sgd",
        lr: float = 0.1,
        steps: int = 600,
        batch_size: int = 64,
        seed: int = 0,
        act_every: int = 10,
        refresh_hz: float = 10.0,
        recorder_options: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(model, Session):
            self.session = model
        elif data is None:
            self.session = Session.watching(model, act_every=act_every, **(recorder_options or {}))
        else:
            config = dict(loss_fn=loss_fn, optimizer=optimizer, lr=lr, steps=steps, seed=seed,
                          batch_size=batch_size, act_every=act_every)  # fmt: skip
            self.session = Session(model, data, **config)
        self.updates_sent = 0
        self._closed = False
        self._lock = threading.RLock()
        self._seen: tuple[Any, ...] | None = None
        self._running: Run | None = None  # the run whose end this panel has yet to show
        self._searching = False  # a search for a fix this panel has yet to announce the end of
        self._draw_error = ""
        self._refresher = Refresher(self._tick, refresh_hz, "gradwidget-refresher")
        self._build()
        self.session.subscribe(self._refresher.poke)
        self._tick()  # draws what the session already holds (a followed log), here and now
        session = self.session
        # Follows what is still to come. A watched model waits for its first capture instead:
        # started here, its first redraw came half a second after the panel was built, inside
        # a Lightning run that began 7 ms later, whatever the run had to show by then.
        if session.active is not None or session.polling or session.searching:
            self._refresher.poke()

    @classmethod
    def follow(
        cls, path: str | Path, *, refresh_hz: float = 2.0, stale_s: float = 5.0,
        capacity: int = 1024,
    ) -> GradPanel:  # fmt: skip
        """A panel on the log(s) a job writes at ``path``: a run's ``log_dir``, or a folder of
        run folders shown side by side. ``stale_s``: after this long without new data the
        status says so; ``capacity``: buckets per series kept per run, however long the job.
        """
        session = Session.following(path, capacity=capacity, stale_s=stale_s)
        return cls(session, refresh_hz=refresh_hz)

    # -- what it shows (the session's) -------------------------------------------------------

    model = property(lambda self: self.session.model, doc="The model (None for a log).")

    @property
    def data(self) -> Any:
        """The training data of the next run (set it to correct the data and retrain)."""
        return self.session.data

    @data.setter
    def data(self, value: Any) -> None:
        self.session.data = value

    @property
    def config(self) -> Any:
        """The TrainConfig of the next run (replace it to correct a setting and retrain)."""
        return self.session.config

    @config.setter
    def config(self, value: Any) -> None:
        self.session.config = value

    thresholds = property(lambda self: self.session.thresholds, doc="The diagnosis's limits.")
    runs = property(lambda self: self.session.runs, doc="The session's runs (RunRecord).")
    recorder = property(lambda self: self.session.recorder, doc="Own loop: the Recorder.")
    version = property(lambda self: self.session.version, doc="Moves with new data.")

    @property
    def shown(self) -> str | None:
        """Name of the run (or log) whose charts and diagnosis are on show."""
        return self.session.shown

    # -- layout ------------------------------------------------------------------------------

    def _build(self) -> None:
        session = self.session
        self.train_button = _button("Train", "play", "gw-train", lambda _: self.train())
        self.stop_button = _button("Stop", "stop", "gw-stop", lambda _: self.stop())
        self.export_button = report.export_button(self)
        self.status = StatusBar()
        self.chooser = w.Dropdown(description="Show", layout=w.Layout(width="max-content"))
        self.chooser.add_class("gw-chooser")
        self.chooser.observe(self._on_choice, names="value")
        base = session.initial_model
        fixable = base is not None
        self.fixes = (
            None
            if base is None
            else FixBar(
                base, self._on_fixes_changed, self._retrain_clicked, session.config, self.autofix
            )
        )
        # Status, diagnosis and fixes on top; the charts below them in a grid.
        self.live = LiveCharts(session.thresholds, beside=self.fixes)
        self.live.expect(session.layers, session.initial_model)  # before training, not in it
        # Joins the panel with the second source (bqplot lays out a hidden figure at zero
        # size), so a panel never shows an empty comparison.
        self.compare = CompareView(self.remove_run)
        buttons = [self.train_button, self.stop_button] if fixable else []
        toolbar = w.HBox([*buttons, self.export_button, self.chooser, self.status])
        super().__init__([toolbar, self.live])
        self.add_class("gw-panel")
        if session.logs:
            self.add_class("gw-follow")
        if not session.can_train and self.fixes is not None:
            for button in (self.train_button, self.stop_button):
                button.disabled, button.tooltip = True, _OWN_LOOP
            self.fixes.allow_retrain(_OWN_LOOP)
        self.status.say(_OWN_LOOP if session.recorder is not None else session.status().text)
        self._sync_sources()

    def _sync_sources(self) -> None:
        """Chooser and comparison follow the session's sources (added, removed, shown)."""
        names = list(self.session.sources)
        with self.chooser.hold_sync():
            if list(self.chooser.options) != names:
                self.chooser.options = names
            self.chooser.value = self.session.shown if self.session.shown in names else None
        self.chooser.layout.display = "" if len(names) > 1 else "none"
        if len(names) < 2 and self.compare not in self.children:
            # Nothing to compare yet: a run's small chart and loss line are built when a
            # second run comes (for the first run of a 10-layer panel they cost 10-15 ms).
            return
        trials = {r.name for r in self.session.runs if r.role == "trial"}
        for name in names:
            if name not in self.compare.cells:
                self.compare.add_run(name, trial=name in trials)
        if self.compare not in self.children:
            self.children = (*self.children, self.compare)

    # -- actions -----------------------------------------------------------------------------

    def train(self) -> Run | None:
        """Start a baseline run from the initial weights; None (and a status line) if refused."""
        return self._act(self.session.train)

    def retrain(self, names: Iterable[str]) -> Run | None:
        """Start a run of the initial model with remedies ``names``, same config and seed.

        Model remedies build the run's model; training remedies (``clip_grad``, ``lower_lr``)
        change the run's ``TrainConfig``. Refused (None, with a status line) while another
        run is active (one run at a time), or for unknown or rival names.
        """
        return self._act(lambda: self.session.retrain(names))

    def _retrain_clicked(self, names: tuple[str, ...]) -> None:
        self.retrain(names)

    def _act(self, start: Callable[[], Run]) -> Run | None:
        with self._lock:
            try:
                if self._closed:
                    raise GradWidgetError("This panel is closed.")
                run = start()
            except GradWidgetError as why:
                self.status.say(str(why), "warn")
                return None
            self._follow_run(run)
            self.status.say(f"{run.name}: starting…")
        self._refresher.poke()
        return run

    def autofix(self, data: Any = None, *, loss_fn: Any = None, **options: Any) -> Any:
        """Find a fix: trials of the suggested fixes, the best retrained; the search's handle.

        The search runs on a background thread (Stop ends it at any moment) and every run it
        makes joins the comparison; ``handle.wait()`` gives the result (``.winner``,
        ``.run``, ``.trials``, ``.message``). ``options``: ``budget_s``, ``trial_steps``,
        ``max_trials``. An own-loop panel has no data of its own: pass ``data`` (and
        ``loss_fn``), and a new panel below searches on a copy of your model.
        None (with a status line) when it cannot start.
        """
        if self.session.recorder is not None:
            return self._autofix_own_loop(data, loss_fn, options)
        with self._lock:
            try:
                if self._closed:
                    raise GradWidgetError("This panel is closed.")
                self.compare.reserve(options.get("max_trials", MAX_TRIALS) + 2)
                search = self.session.autofix(**options)
            except GradWidgetError as why:
                self.status.say(str(why), "warn")
                return None
            self._searching = True
            self._controls()
            self.status.say("Find a fix: starting…")
        self._refresher.poke()
        return search

    def _autofix_own_loop(self, data: Any, loss_fn: Any, options: dict[str, Any]) -> Any:
        if data is None:
            self.status.say(_NO_DATA_TO_FIX, "warn")
            return None
        from IPython.display import display

        config = dataclasses.replace(self.session.config, loss_fn=loss_fn)
        session = Session(self.session.model, data, **dataclasses.asdict(config))
        panel = GradPanel(session)
        display(panel)
        self.status.say("Find a fix searches on a copy of your model: see the panel below.")
        return panel.autofix(**options)

    def _follow_run(self, run: Run) -> None:
        """Show ``run`` from its first step (started here, or by the session's search)."""
        self._running, self._seen = run, None
        self._sync_sources()
        self.live.restart()
        self._controls()

    def _controls(self) -> None:
        busy = self.session.active is not None or self.session.searching
        self.train_button.disabled = busy or not self.session.can_train
        if self.fixes is not None and self.session.can_train:
            self.fixes.allow_retrain("A run is in progress." if busy else None)

    def stop(self) -> None:
        """Stop the active run after its current step (a status line if nothing runs)."""
        run = self.session.stop()
        self.status.say(f"Stopping {run.name}…" if run is not None else "Nothing is running.")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no run is active (or ``timeout`` s), then redraw; True if none is."""
        done = self.session.wait(timeout)
        with self._lock:
            self._seen = None  # redraw even if no new point: the step count may have moved
            self._tick()
        return done

    def poll(self) -> bool:
        """Followed logs: read what came since the last poll and redraw; True if any new."""
        with self._lock:
            fresh = self.session.poll()
            self._tick()
        return fresh

    def capture(self, loss: Any = None, *, scaler: Any = None) -> None:
        """Own-loop mode: record this step; call after ``loss.backward()``, before ``step()``.

        Under AMP pass the ``torch.amp.GradScaler``: norms are then shown unscaled.
        """
        self.session.capture(loss, scaler=scaler)

    def remove_run(self, name: str) -> None:
        """Drop run ``name`` from the comparison (not while it is running)."""
        with self._lock:
            try:
                self.session.remove_run(name)
            except GradWidgetError as why:
                self.status.say(str(why), "warn")
                return
            self._sync_sources()
            self._update_compare()
            self.status.say(f"Removed run {name!r}.")

    def remedied_model(self, names: Iterable[str]) -> nn.Module:
        """A copy of the initial model with model remedies ``names`` applied (canonical order)."""
        return self.session.remedied_model(names)

    def history(self, name: str | None = None) -> History:
        """Everything recorded by run ``name`` (default: the one on show)."""
        return self.session.history(name)

    def _on_fixes_changed(self, names: tuple[str, ...]) -> None:
        if self.session.recorder is None or not names:
            return
        model_names, settings_names = split(names)
        text = f"Get the fixed model with panel.remedied_model({list(model_names)!r}). "
        text = text if model_names else ""
        if settings_names:  # the user's loop owns its optimizer and its step
            name = settings_names[0]
            text += (
                f"Put {', '.join(settings_names)} in your loop: "
                f"gw.remedies.check(model, {name!r}).code has the lines."
            )
        self.status.say(text.strip())

    def _on_choice(self, change: dict[str, Any]) -> None:
        name = change["new"]
        if name is None or name == self.session.shown:
            return
        self.session.show(name)
        self.live.restart()
        with self._lock:
            self._seen = None
            self._tick()

    # -- results -----------------------------------------------------------------------------

    def comparison(self, loss_threshold: float | None = None) -> Any:
        """One row per run: a DataFrame of :class:`gradwidget.session.summary.RunSummary` fields.

        ``steps_to_threshold`` counts steps until the loss reaches ``loss_threshold``, the
        same bar for every run (default: half the first run's first loss). A notebook shows
        it as the panel's table, in words.
        """
        from ._frame import Comparison  # pandas only when asked for

        return Comparison.of(self.session.summaries(loss_threshold))

    def export(self, path: Any) -> list[Any]:
        """Write each run's history and the comparison table; the paths written.

        ``path`` ending in ``.json`` or ``.csv`` gives ``<stem>-<run>.<suffix>`` files next to
        it; any other ``path`` is a folder of ``<run>.json`` files. Both add a comparison CSV.
        """
        return self.session.export(path)

    def export_html(self, path: str | Path) -> Path:
        """Write the panel as one HTML file that opens offline (see the README); its path.

        Charts with their data, each run's diagnosis, the comparison and the run settings;
        ``path`` may be a folder, which gets a new ``gradwidget-report-<time>.html``.
        """
        with self._lock:  # one consistent picture: no redraw halfway through
            return report.export_html(self.session, self, path)

    def snapshot(self, dpi: int = 100) -> Snapshot:
        """A PNG picture of the runs (needs ``gradwidget[snapshot]``); leave it in a cell.

        Drawn with matplotlib from the recorded data, so it stays in a saved notebook and
        shows where no kernel runs (GitHub, nbviewer).
        """
        with self._lock:
            return take(self.session, dpi)

    # -- refresh (refresher thread, or the caller of wait) ------------------------------------

    def _tick(self) -> bool:
        with self._lock:
            if self._closed:
                return False
            session = self.session
            session.poll()
            source = session.source()
            key = (session.shown, None if source is None else source.version, *session.sources)
            finishing = self._running is not None and self._running.state.ended
            started = session.active is not None and session.active is not self._running
            changed = key != self._seen
            if changed or finishing:
                self._seen = key
                ended = source is None or source.status().ended
                self._safe_draw(final=ended)
            if finishing:
                self._finish()
            elif list(self.chooser.options) != list(session.sources):
                # Runs that began and ended between two redraws (a search's short trials,
                # with redraws up to a second apart) were never followed: list them now.
                self._sync_sources()
                self._update_compare()
            if started and session.active is not None:  # a run the search launched
                self._follow_run(session.active)
            elif changed or session.logs or self._searching:
                self._show_status()
            if self._searching and not session.searching:
                self._searching = False
                self._show_status()  # the verdict, with numbers
                self._controls()
            return session.active is not None or changed or session.polling or session.searching

    def _safe_draw(self, final: bool) -> None:
        try:
            self._draw(final)
        except Exception as exc:  # a drawing bug must show, and must not stall the run's end
            if repr(exc) != self._draw_error:  # once per distinct error, not 10 times a second
                self._draw_error = repr(exc)
                self.status.show_error("The panel failed to redraw its charts.", exc)

    def _draw(self, final: bool) -> None:
        # Redraws read a cheap live copy; the last draw of a source (it grows no more) reads
        # everything, landed.
        source = self.session.source()
        if source is None:
            return
        snapshot = source.snapshot() if final else source.live()
        if self.live.draw(snapshot, final, source.model):
            if self.fixes is not None:
                self.fixes.suggest(r for f in self.live.findings for r in f.remedies)
            self._update_compare()
        self.updates_sent += 1

    def _update_compare(self) -> None:
        if self.compare in self.children:
            self.compare.update(self.session.histories(), self.session.summaries())

    def _show_status(self) -> None:
        self.status.show(self.session.status())

    def _finish(self) -> None:
        run, self._running = self._running, None
        self._sync_sources()
        self._update_compare()
        source = self.session.source(run.name) if run is not None else None
        if not self.session.searching:
            self.status.show(source.status() if source is not None else self.session.status())
        self._controls()

    # -- teardown ----------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the active run and the refresher, remove every hook, close every widget."""
        if "_refresher" not in self.__dict__:  # __init__ raised; ipywidgets' __del__ calls us
            return
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self.session.close()
        self._refresher.stop()
        self.compare.release()
        close_tree(self)
        close_tree(self.live.dashboard)  # built before the first draw, not yet in the tree


def watch(model: nn.Module, **options: Any) -> GradPanel:
    """Display a panel that watches ``model`` in your own loop and return it.

    Call ``panel.capture(loss)`` after ``loss.backward()``; ``options`` are those of
    :class:`GradPanel` (``act_every``, ``refresh_hz``, ``seed``).
    """
    from IPython.display import display

    panel = GradPanel(model, **options)
    display(panel)
    return panel


def _button(text: str, icon: str, css: str, handler: Any) -> w.Button:
    button = w.Button(description=text, icon=icon)
    button.add_class(css)
    button.on_click(handler)
    return button
