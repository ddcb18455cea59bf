"""GradPanel: live gradient charts, a diagnosis and one-click fixes, in one widget.

Two ways in. Managed: ``GradPanel(model, data)`` trains copies of the model on a background
thread (Train / Stop / Retrain with fixes). Own loop: ``GradPanel(model)`` or ``watch(model)``
hooks the model itself and the user calls ``panel.capture(loss)`` after ``loss.backward()``.
Either way a refresher thread redraws at most ``refresh_hz`` times a second from a snapshot.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import ipywidgets as w
from torch import nn

from ..diagnose.rules import Thresholds
from ..errors import GradWidgetError, RemedyNotApplicable
from ..history import History
from ..record.recorder import Recorder
from ..remedies import LABELS, REGISTRY, apply_remedies, apply_settings, split
from ..train.training import Run, TrainConfig
from . import _export, report
from ._refresher import Refresher
from ._widgets import close_tree
from .compare import CompareView
from .fixes import FixBar
from .live import LiveCharts
from .runs import RunRecord, unique_name
from .snapshot import Snapshot, take
from .status import StatusBar

__all__ = ["GradPanel", "RunRecord", "watch"]

_CLOSE_WAIT_S = 10.0  # a run stops within a step; a step stuck longer is the model's bug
_OWN_LOOP = "This panel watches your own loop: call panel.capture(loss) after loss.backward()."
_WATCHED: weakref.WeakKeyDictionary[nn.Module, GradPanel] = weakref.WeakKeyDictionary()


class GradPanel(w.VBox):
    """Live per-layer gradient norms, diagnosis and fixes for a PyTorch model.

    Parameters
    ----------
    model : torch.nn.Module
        The model. With ``data``, each run trains its own copy made from the weights ``model``
        has now, so ``model`` is never changed and every retrain starts from the same
        weights; get trained models from ``panel.runs``. Without ``data``, the panel watches
        ``model`` as you train it (one open panel per model in this mode).
    data : Dataset, (X, y) or iterable of (x, y) batches, optional
        Training data, as for :class:`gradwidget.Run`; leave out to train in your own loop.
    loss_fn, optimizer, lr, steps, batch_size, seed, act_every
        The :class:`gradwidget.TrainConfig` of every run (same seed: same data order).
    refresh_hz : float
        Most chart updates per second, whatever the training speed.
    recorder_options : dict, optional
        Own loop only: further :class:`gradwidget.Recorder` options (``capacity``, ``budget``).
    """

    def __init__(
        self,
        model: nn.Module,
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
        self.model, self.data = model, data
        self.recorder: Recorder | None = None
        self._closed = False
        self.config = TrainConfig(
            steps=steps, batch_size=batch_size, optimizer=optimizer, lr=lr, seed=seed,
            loss_fn=loss_fn, act_every=act_every,
        )  # fmt: skip
        self.thresholds = Thresholds()
        self.runs: list[RunRecord] = []
        self.updates_sent = 0
        self._initial = apply_remedies(model, ())  # a copy, taken before any hook is added
        self._refresher = Refresher(self._tick, refresh_hz, "gradwidget-refresher")
        self._lock = threading.RLock()
        self._active: Run | None = None
        self._shown: Run | None = None
        self._seen: tuple[int, int] | None = None
        self._draw_error = ""
        self.recorder = self._attach(model, recorder_options or {}) if data is None else None
        self._build()

    # -- layout --------------------------------------------------------------------------

    def _build(self) -> None:
        self.train_button = _button("Train", "play", "gw-train", lambda _: self.train())
        self.stop_button = _button("Stop", "stop", "gw-stop", lambda _: self.stop())
        self.status = StatusBar()
        self.fixes = FixBar(self._initial, self._on_fixes_changed, self.retrain, self.config)
        # Status, diagnosis and fixes on top; the charts below them in a grid.
        self.live = LiveCharts(self.thresholds, beside=self.fixes)
        # Joins the panel with the second run (bqplot lays out a hidden figure at zero size),
        # so a panel never shows an empty comparison.
        self.compare = CompareView(self.remove_run)
        self.export_button = report.export_button(self)
        toolbar = w.HBox([self.train_button, self.stop_button, self.export_button, self.status])
        super().__init__([toolbar, self.live])
        self.add_class("gw-panel")
        if self.recorder is not None:
            for button in (self.train_button, self.stop_button):
                button.disabled, button.tooltip = True, _OWN_LOOP
            self.fixes.allow_retrain(_OWN_LOOP)
        self.status.say(_OWN_LOOP if self.recorder is not None else "Ready: press Train.")

    def _attach(self, model: nn.Module, options: dict[str, Any]) -> Recorder:
        owner = _WATCHED.get(model)
        # A panel whose recorder is closed (a trainer callback's, after fit) hooks nothing.
        if owner is not None and not owner._closed and not owner.recorder.closed:
            raise GradWidgetError(
                "This model is already watched by another open panel, and two panels would "
                "hook it twice. Close the other panel first (panel.close())."
            )
        recorder = Recorder(model, act_every=self.config.act_every, **options)
        _WATCHED[model] = self
        return recorder

    @classmethod
    def follow(cls, path: Any, **options: Any) -> Any:
        """A live view of the log(s) a job writes at ``path``: :class:`.follow.FollowView`."""
        from .follow import FollowView

        return FollowView(path, **options)

    # -- actions -------------------------------------------------------------------------

    def train(self) -> Run | None:
        """Start a baseline run from the initial weights; None (and a status line) if refused."""
        return self._launch("baseline", ())

    def retrain(self, names: Iterable[str]) -> Run | None:
        """Start a run of the initial model with remedies ``names``, same config and seed.

        Model remedies build the run's model (``apply_remedies``); training remedies
        (``clip_grad``, ``lower_lr``) change the run's ``TrainConfig``. Refused (None, with a
        status line) while another run is active (one run at a time), or for unknown or rival
        names.
        """
        wanted = set(names)
        try:
            split(wanted)
        except ValueError as why:  # an unknown name, or two activations (inits, norms)
            self.status.say(str(why), "warn")
            return None
        chosen = tuple(r.name for r in REGISTRY if r.name in wanted)
        if not chosen:
            self.status.say("Choose at least one fix to retrain with.", "warn")
            return None
        return self._launch(" + ".join(LABELS[n] for n in chosen), chosen)

    def _launch(self, label: str, names: tuple[str, ...]) -> Run | None:
        with self._lock:
            refusal = self._refusal()
            if refusal is None:
                try:
                    model_names, settings_names = split(names)
                    config = apply_settings(self.config, settings_names)
                    return self._start(label, names, self.remedied_model(model_names), config)
                except (RemedyNotApplicable, ValueError) as why:
                    refusal = str(why)
            self.status.say(refusal, "warn")
            return None

    def _refusal(self) -> str | None:
        if self._closed:
            return "This panel is closed."
        if self.recorder is not None:
            return _OWN_LOOP
        if self._active is not None:
            return f"{self._active.name!r} is still running: press Stop first (one run at a time)."
        return None

    def _start(
        self, label: str, names: tuple[str, ...], model: nn.Module, config: TrainConfig
    ) -> Run:
        name = unique_name(label, {r.name for r in self.runs})
        run = Run(model, self.data, config, name=name)
        self.runs.append(RunRecord(name, names, model, run))
        self.compare.add_run(name)
        if len(self.runs) >= 2 and self.compare not in self.children:  # something to compare
            self.children = (*self.children, self.compare)
        self._active = self._shown = run
        self._seen = None
        self.live.restart()
        self.train_button.disabled = True
        self.fixes.allow_retrain("A run is in progress.")
        self.status.say(f"{name}: starting…")
        run.start()
        self._refresher.poke()
        return run

    def stop(self) -> None:
        """Stop the active run after its current step (a status line if nothing runs)."""
        run = self._active
        if run is None:
            self.status.say("Nothing is running.")
            return
        run.stop(timeout=0)  # never block the kernel: the refresher reports the end
        self.status.say(f"Stopping {run.name}…")

    def wait(self, timeout: float | None = None) -> bool:
        """Block until no run is active (or ``timeout`` s), then redraw; True if none is."""
        run = self._active
        if run is not None:
            run.join(timeout)
        if self.recorder is not None:
            self.recorder.flush()  # an own loop's last steps, still on their way to the host
        with self._lock:
            self._seen = None  # redraw even if no new point: the step count may have moved
            self._tick()
        return self._active is None

    def capture(self, loss: Any = None, *, scaler: Any = None) -> None:
        """Own-loop mode: record this step; call after ``loss.backward()``, before ``step()``.

        Under AMP pass the ``torch.amp.GradScaler``: norms are then shown unscaled.
        """
        if self.recorder is None:
            raise GradWidgetError(
                "This panel trains the model itself; capture() is for a panel made without "
                "data (GradPanel(model) or gw.watch(model)) around your own training loop."
            )
        self.recorder.capture(loss, scaler=scaler)
        self._refresher.poke()

    def remove_run(self, name: str) -> None:
        """Drop run ``name`` from the comparison (not while it is running)."""
        with self._lock:
            record = next((r for r in self.runs if r.name == name), None)
            if record is None or record.run is self._active:
                why = "is still running: stop it first" if record else "does not exist"
                self.status.say(f"Run {name!r} {why}.", "warn")
                return
            self.runs.remove(record)
            self._update_compare()
            self.status.say(f"Removed run {name!r}.")

    def remedied_model(self, names: Iterable[str]) -> nn.Module:
        """A copy of the initial model with model remedies ``names`` applied (canonical order)."""
        return apply_remedies(self._initial, tuple(names), self.config.seed, self.config)

    def _on_fixes_changed(self, names: tuple[str, ...]) -> None:
        if self.recorder is None or not names:
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

    # -- results -------------------------------------------------------------------------

    def comparison(self, loss_threshold: float | None = None) -> Any:
        """One row per run: a DataFrame of :class:`gradwidget.train.summary.RunSummary` fields.

        ``steps_to_threshold`` counts steps until the loss reaches ``loss_threshold``, the
        same bar for every run (default: half the first run's first loss).
        """
        return _export.frame(self._summaries(loss_threshold))

    def export(self, path: Any) -> list[Any]:
        """Write each run's history and the comparison table; the paths written.

        ``path`` ending in ``.json`` or ``.csv`` gives ``<stem>-<run>.<suffix>`` files next to
        it; any other ``path`` is a folder of ``<run>.json`` files. Both add a comparison CSV.
        """
        histories = {r.name: r.history for r in self.runs}
        return _export.write(path, histories, self._summaries(None))

    def export_html(self, path: str | Path) -> Path:
        """Write the panel as one HTML file that opens offline (see the README); its path.

        Charts with their data, each run's diagnosis, the comparison and the run settings;
        ``path`` may be a folder, which gets a new ``gradwidget-report-<time>.html``.
        """
        with self._lock:  # one consistent picture: no redraw halfway through
            return report.export_html(self, path)

    def snapshot(self, dpi: int = 100) -> Snapshot:
        """A PNG picture of the runs (needs ``gradwidget[snapshot]``); leave it in a cell.

        Drawn with matplotlib from the recorded data, so it stays in a saved notebook and
        shows where no kernel runs (GitHub, nbviewer).
        """
        with self._lock:
            return take(self, dpi)

    def _summaries(self, loss_threshold: float | None) -> list:
        return _export.summaries(self.runs, loss_threshold)

    # -- refresh (refresher thread, or the caller of wait) --------------------------------

    def _tick(self) -> bool:
        with self._lock:
            if self._closed:
                return False
            run, live = self._active, self._live()
            key = None if live is None else (id(live), live.version)
            ended = run is not None and run.state.ended
            changed = key != self._seen
            if changed or ended:
                self._seen = key
                self._safe_draw(final=ended)
            if ended:
                self._finish(run)
            return (run is not None and not ended) or changed

    def _safe_draw(self, final: bool) -> None:
        try:
            self._draw(final)
        except Exception as exc:  # a drawing bug must show, and must not stall the run's end
            if repr(exc) != self._draw_error:  # once per distinct error, not 10 times a second
                self._draw_error = repr(exc)
                self.status.show_error("The panel failed to redraw its charts.", exc)

    def _live(self) -> History | None:
        if self.recorder is not None:
            return self.recorder.live
        rec = self._shown.recorder if self._shown is not None else None
        return rec.live if rec is not None else None

    def _draw(self, final: bool) -> None:
        # Redraws read the live history, not recorder.history: that waits for copies still on
        # their way from the device, under the lock the training loop's capture() takes. The
        # last draw of a run (it trains no more) reads everything, landed.
        live = self._live()
        if final:
            snapshot = self._shown.history
        else:
            snapshot = live.snapshot() if live is not None else History(())
        model = self.model if self.recorder is not None else self._shown.model
        if self.live.draw(snapshot, final, model):
            self.fixes.suggest(r for f in self.live.findings for r in f.remedies)
            if self.runs:
                self._update_compare()
        self._show_progress()
        self.updates_sent += 1

    def _update_compare(self) -> None:
        histories = {r.name: r.history for r in self.runs}
        self.compare.update(histories, self._summaries(None))

    def _show_progress(self) -> None:
        run = self._active
        if self.recorder is not None:
            self.status.say(f"Watching your loop: step {self.recorder.step}.")
        elif run is not None and not run.state.ended:
            self.status.show_run(run)

    def _finish(self, run: Run) -> None:
        self._active = None
        self.status.show_end(run)
        self.train_button.disabled = False
        self.fixes.allow_retrain(None)

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the active run and the refresher, remove every hook, close every widget."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            active = self._active
        if active is not None:
            active.stop(timeout=_CLOSE_WAIT_S)
        for record in self.runs:
            record.run.join(timeout=_CLOSE_WAIT_S)
        self._refresher.stop()
        if self.recorder is not None:
            self.recorder.close()
            _WATCHED.pop(self.model, None)
        close_tree(self)


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
