"""Find a fix: diagnose a baseline, try the suggested remedies in short seeded trials, retrain
the best for the full run, and say what won and why, with numbers.

The search talks to its host (a :class:`~gradwidget.session.Session`, the panel's or a script's)
through :class:`TrialHost`: every run starts from the same initial weights and data order, so
trials differ only by their fixes. :class:`Autofix` runs the search on a daemon thread (a
notebook stays responsive; ``stop()`` works at any moment); :func:`autofix` blocks until done.
torch and numpy only.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Protocol

import numpy as np
from torch import nn

from ..diagnose.rules import Finding, Thresholds, diagnose
from ..errors import GradWidgetError, RemedyNotApplicable
from ..train.training import Run, RunState, TrainConfig
from ._candidates import candidates, fix_label
from ._trials import (
    AutofixResult,
    Standing,
    Trial,
    healthy,
    join_words,
    lower_first,
    standing,
    verdict,
)

__all__ = [
    "Autofix",
    "AutofixResult",
    "Trial",
    "TrialHost",
    "autofix",
    "candidates",
]

DEFAULT_BUDGET_S = 60.0  # the tutorial's sigmoid MLP takes 6-7 s of it, 20 s on a busy machine
MAX_TRIALS = 16  # four suggested fixes of four groups make 15 fix sets
_POLL_S = 0.1  # how often a trial's loss is checked (and a Stop noticed)
_DIVERGING = 4.0  # a trial whose recent loss is 4x its first losses is blowing up
_LOSING = 1.5  # a trial whose loss is 1.5x the baseline's halfway through clearly loses


class TrialHost(Protocol):
    """What the search needs from whoever owns the runs (a :class:`~gradwidget.session.Session`).

    Attributes
    ----------
    config : TrainConfig
        The training settings every run starts from (steps, seed, ...).
    thresholds : Thresholds
        The limits the diagnosis of the baseline and of every trial uses.
    initial_model : torch.nn.Module or None
        The untrained model every run starts from; read only (``remedies.suggest``). None
        when there is no model to fix (a followed log).
    """

    config: TrainConfig
    thresholds: Thresholds

    @property
    def initial_model(self) -> nn.Module | None:
        """The copy every run starts from, or None."""

    def baseline(self) -> Run | None:
        """The finished run without fixes, or None when there is none yet."""

    def launch(self, fixes: tuple[str, ...], *, steps: int, label: str, role: str) -> Run:
        """Start a run of the initial model with ``fixes`` (model and training remedies).

        Same initial weights and seed (data order) as every other run; ``role`` is
        ``"baseline"``, ``"trial"`` or ``"winner"``. Raises RemedyNotApplicable or ValueError
        when the fixes cannot apply.
        """


class Autofix:
    """The search for a fix, on a daemon thread: ``start()``, then ``wait()`` or ``stop()``.

    Parameters
    ----------
    host : TrialHost
        Owns the runs: a :class:`~gradwidget.session.Session`.
    budget_s : float
        Cap on the whole search (baseline, trials, final retrain), in seconds; trials end
        early enough to leave time for the final retrain at the speed measured so far.
    trial_steps : int or None
        Length of each trial; default a quarter of the run (at least 100 steps).
    max_trials : int
        Most fix sets to try.

    Attributes
    ----------
    progress : str
        What the search is doing now, in a sentence (for a status line).
    result : AutofixResult or None
        Set when the search ends (also after ``stop()``).
    trial_list : list of Trial
        The trials so far, in the order run.
    error : GradWidgetError or None
        Why the search could not run (e.g. the baseline failed on the data).
    """

    def __init__(
        self,
        host: TrialHost,
        *,
        budget_s: float = DEFAULT_BUDGET_S,
        trial_steps: int | None = None,
        max_trials: int = MAX_TRIALS,
    ) -> None:
        if not budget_s > 0 or max_trials < 1 or (trial_steps is not None and trial_steps < 1):
            raise ValueError("budget_s must be positive, max_trials and trial_steps at least 1")
        steps = host.config.steps
        self.host, self.budget_s, self.max_trials = host, budget_s, max_trials
        self.trial_steps = min(steps, trial_steps or max(100, steps // 4))
        self.progress = "Not started."
        self.result: AutofixResult | None = None
        self.error: GradWidgetError | None = None
        self.trial_list: list[Trial] = []
        self._stop, self._done = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._deadline = 0.0
        self._speed = 0.0  # steps per second, the slowest seen (a norm layer slows a step)
        self._cut = ""  # why fewer trials ran than planned, for the verdict

    # -- control ---------------------------------------------------------------------------

    def start(self) -> Autofix:
        """Search on a daemon thread; returns at once (``self``)."""
        if self._thread is not None or self._done.is_set():
            raise RuntimeError("This search was started or stopped before: make a new one.")
        self._thread = threading.Thread(target=self._execute, name="gradwidget-autofix")
        self._thread.daemon = True
        self._thread.start()
        return self

    def stop(self, timeout: float | None = 2.0) -> AutofixResult | None:
        """Stop the run in progress and end the search; the result so far."""
        self._stop.set()
        if self._thread is None:  # never started: nothing to wait for
            self.progress = "Stopped before it started."
            self._done.set()
        return self.wait(timeout)

    def wait(self, timeout: float | None = None) -> AutofixResult | None:
        """Wait for the end (at most ``timeout`` seconds); the result, or None before it."""
        self._done.wait(timeout)
        return self.result

    @property
    def done(self) -> bool:
        """Whether the search has ended (found, gave up, stopped or failed)."""
        return self._done.is_set()

    def run(self) -> AutofixResult:
        """Start and block until the end (Ctrl-C stops it); raises what stopped the search."""
        self.start()
        try:
            while not self._done.wait(_POLL_S):
                pass
        except KeyboardInterrupt:
            self.stop(None)
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    # -- the search ------------------------------------------------------------------------

    def _execute(self) -> None:
        try:
            self.result = self._search()
            self.progress = self.result.message
        except GradWidgetError as exc:
            self.error, self.progress = exc, str(exc)
        except Exception as exc:  # a bug or a host refusal: say it rather than die silently
            self.error = GradWidgetError(f"Find a fix failed: {type(exc).__name__}: {exc}")
            self.error.__cause__ = exc
            self.progress = str(self.error)
        finally:
            self._done.set()

    def _search(self) -> AutofixResult:
        self._deadline = time.perf_counter() + self.budget_s
        baseline, note = self._baseline()
        findings = tuple(diagnose(baseline.history, self.host.thresholds))
        if note:
            message = f"Stopped while training the baseline ({note})."
            return self._result(findings, baseline, message, stopped=True)
        if not findings:
            return self._result(findings, baseline, healthy(baseline))
        titles = join_words([lower_first(f.title) for f in findings])
        model = self.host.initial_model
        if model is None:
            raise GradWidgetError("A followed log has no model to fix: fix the job's model.")
        fix_sets = candidates(findings, model, self.host.config)
        if not fix_sets:
            return self._result(findings, baseline, f"The diagnosis ({titles}) suggests no fix.")
        base = standing(baseline, self.trial_steps, self.host.thresholds, findings)
        of = min(len(fix_sets), self.max_trials)
        for fixes in fix_sets:
            if len(self.trial_list) >= self.max_trials:
                break
            if not self._time_for_trial():
                # Under the budget the clock decides how many trials run: say so.
                ran = len(self.trial_list)
                self._cut = f" (budget_s={self.budget_s:g} left time for {ran} of {of} trials)"
                break
            self._trial(fixes, base, baseline, of)
        best = self._best()
        if self._stop.is_set():
            return self._result(findings, baseline, self._stopped(best))
        if best is None:
            return self._result(findings, baseline, self._nothing_helped(titles))
        return self._retrain(best, findings, baseline)

    def _baseline(self) -> tuple[Run, str]:
        run, note = self.host.baseline(), ""
        if run is not None and run.state not in (RunState.FINISHED, RunState.DIVERGED):
            run = None  # a stopped or failed run is not the whole story: train a new one
        if run is None:
            self.progress = f"Training the baseline (no fix, {self.host.config.steps} steps) ..."
            steps = self.host.config.steps
            run = self.host.launch((), steps=steps, label="baseline", role="baseline")
            note = self._follow(run)
        if run.state is RunState.FAILED:
            raise run.error or GradWidgetError(run.message)
        self._speed = run.steps_per_s if run.step >= 50 else 0.0  # a few steps time set-up
        return run, note

    def _best(self) -> Trial | None:
        """The best trial that helped; the earlier one on a tie."""
        return max((t for t in self.trial_list if t.helped), key=lambda t: t.score, default=None)

    def _time_for_trial(self) -> bool:
        """Room for one more trial and the final retrain, at the slowest speed seen."""
        if self._stop.is_set():
            return False
        if self._speed <= 0:
            return True
        need = (self.trial_steps + self.host.config.steps) / self._speed
        return time.perf_counter() + need <= self._deadline

    def _trial(self, fixes: tuple[str, ...], base: Standing, baseline: Run, of: int) -> None:
        label, best = fix_label(fixes), self._best()
        self.progress = (
            f"Trial {len(self.trial_list) + 1} of up to {of}: {label} ({self.trial_steps} "
            "steps) ..." + (f" Best so far: {fix_label(best.fixes)}." if best else "")
        )
        try:
            run = self.host.launch(fixes, steps=self.trial_steps, label=label, role="trial")
        except (RemedyNotApplicable, ValueError):
            return  # this combination cannot be built (e.g. no block left for a skip)
        note = self._follow(run, _watch(baseline, self.trial_steps))
        if run.state in (RunState.FAILED, RunState.DIVERGED):
            note = f"{run.state.value}: {run.message}"
        mine = standing(run, run.step, self.host.thresholds)
        score, helped = mine.score(base, len(fixes))
        kinds = tuple(f.kind for f in mine.findings)
        seconds = round(run.wall_time, 3)
        trial = Trial(fixes, score, mine.loss, mine.accuracy, kinds, seconds, run.step,
                      helped and not note, note)  # fmt: skip
        self.trial_list.append(trial)
        if run.steps_per_s > 0 and not note:
            self._speed = min(self._speed, run.steps_per_s) if self._speed else run.steps_per_s

    def _follow(self, run: Run, watch: Any = None) -> str:
        """Wait for ``run`` to end; stop it at a Stop, at the deadline, or when ``watch`` (a
        function of the run) gives a reason. The reason, or "" when it ended by itself."""
        while not run.state.ended:
            run.join(_POLL_S)
            reason = None
            if self._stop.is_set():
                reason = "stopped"
            elif time.perf_counter() > self._deadline:
                reason = f"out of time: budget_s={self.budget_s:g}"
            elif watch is not None and not run.state.ended:
                reason = watch(run)
            if reason:
                return reason if run.stop(None) is RunState.STOPPED else ""
        return ""

    def _retrain(self, best: Trial, findings: tuple[Finding, ...], baseline: Run) -> AutofixResult:
        label, steps = fix_label(best.fixes), self.host.config.steps
        self.progress = f"{label} won the trials; retraining it for {steps} steps ..."
        run = self.host.launch(best.fixes, steps=steps, label=label, role="winner")
        note = self._follow(run)
        message = verdict(best.fixes, findings, baseline, run, self.host.thresholds)
        if note:
            message += f" (the full run was {note} at step {run.step} of {steps})"
        return self._result(findings, baseline, message + self._cut, best.fixes, run, bool(note))

    def _result(
        self,
        findings: tuple[Finding, ...],
        baseline: Run,
        message: str,
        winner: tuple[str, ...] = (),
        run: Run | None = None,
        stopped: bool = False,
    ) -> AutofixResult:
        stopped = stopped or self._stop.is_set()
        trials = tuple(self.trial_list)
        return AutofixResult(findings, winner, run, baseline, message, trials, stopped)

    def _stopped(self, best: Trial | None) -> str:
        text = f"Stopped after {len(self.trial_list)} trial{'s' * (len(self.trial_list) != 1)}"
        if best is None:
            return text + "; no fix had helped yet."
        best_text = f"{fix_label(best.fixes)} (score {best.score:.2f})"
        return f"{text}; best so far: {best_text}, not retrained."

    def _nothing_helped(self, titles: str) -> str:
        if not self.trial_list:
            return (
                f"No trial fitted in budget_s={self.budget_s:g} beside the final retrain: "
                "give the search more time."
            )
        best = max(self.trial_list, key=lambda t: t.score)
        return (
            f"Nothing helped: {len(self.trial_list)} trials, none cleared {titles} or improved on "
            f"the baseline; the best, {fix_label(best.fixes)}, scored {best.score:.2f}.{self._cut}"
        )


def autofix(
    model: nn.Module,
    data: Any,
    *,
    budget_s: float = DEFAULT_BUDGET_S,
    trial_steps: int | None = None,
    max_trials: int = MAX_TRIALS,
    thresholds: Thresholds | None = None,
    **train_config: Any,
) -> AutofixResult:
    """Find a fix for ``model`` on ``data`` without a panel (blocking).

    Trains a baseline, diagnoses it, tries each suggested fix and their compatible
    combinations in short trials from the same initial weights and data order, and retrains
    the best for the full run.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is not changed (every run trains a copy).
    data : Dataset, (X, y) or iterable of batches
        As for :func:`gradwidget.train`; a test split makes accuracy the judge.
    budget_s : float
        Cap on the whole search in seconds (default 60).
    trial_steps : int or None
        Steps per trial (default a quarter of ``steps``, at least 100).
    max_trials : int
        Most fix sets to try (default 16).
    thresholds : Thresholds or None
        Limits of the diagnosis (default ``gw.Thresholds()``).
    **train_config
        Fields of :class:`~gradwidget.TrainConfig` (``steps``, ``lr``, ``seed``, ...).

    Returns
    -------
    AutofixResult
        ``winner``, ``run``, ``findings``, ``trials`` (a DataFrame) and ``message``.

    Raises
    ------
    GradWidgetError
        No data, or the baseline could not train (the message says why).
    """
    if data is None:
        raise GradWidgetError(
            "Find a fix trains the model, so it needs data: pass a gw.datasets.Dataset, "
            "(X, y) tensors or a DataLoader, e.g. gw.autofix(model, gw.datasets.digits())."
        )
    from .session import Session  # imported here: the session imports this module

    session = Session(model, data, thresholds=thresholds, **train_config)
    try:
        search = Autofix(session, budget_s=budget_s, trial_steps=trial_steps, max_trials=max_trials)
        return search.run()
    finally:
        session.close()  # every run has ended: this only releases the session


def _watch(baseline: Run, trial_steps: int) -> Any:
    """A trial's early stop: a reason once its loss blows up or clearly loses."""
    reference = baseline.history.loss_curve()
    base_steps, base_loss = reference.steps, reference.last[:, 0]

    def verdict(run: Run) -> str | None:
        curve = run.history.loss_curve()
        losses = curve.last[:, 0]
        if len(losses) < 20:
            return None
        first, recent = float(np.median(losses[:10])), float(np.median(losses[-10:]))
        if recent > _DIVERGING * first:
            return f"diverging: loss {first:.3g} -> {recent:.3g}"
        same = base_loss[np.isin(base_steps, curve.steps[-10:])]
        if run.step < trial_steps // 2 or same.size == 0 or not np.isfinite(same).all():
            return None
        base = float(np.median(same))
        if recent > _LOSING * base + 0.05:
            return f"clearly losing: loss {recent:.3g} against the baseline's {base:.3g}"
        return None

    return verdict
