"""Train a model while a :class:`~gradwidget.Recorder` watches its gradients.

:class:`Run` trains on a daemon thread so a notebook stays responsive (buttons, charts) and can
stop or pause it between steps; :func:`train` runs the same loop in the calling thread. Two
runs with the same seed see the same batches in the same order, so a remedied copy of a model
can be compared step for step with the original.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from ..datasets import Dataset
from ..errors import DataError, GradWidgetError, TrainingError
from ..history import History
from ..record._budget import StepBudget
from ..record.recorder import Recorder
from . import messages
from .batches import BatchSource, as_source
from .settings import OPTIMIZERS, RunState, TrainConfig
from .steps import Stepper

__all__ = ["OPTIMIZERS", "Run", "RunState", "TrainConfig", "train"]


class Run:
    """One training run of ``model`` on ``data``, on a background thread.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place (pass a copy to keep the original).
    data : Dataset, (X, y) or iterable of (x, y) batches
        A :class:`~gradwidget.datasets.Dataset` (its test split feeds ``test_accuracy``),
        tensors or arrays shuffled with the seed, or batches such as a ``DataLoader``,
        consumed in their own order (give the loader a seeded ``generator=``).
    config : TrainConfig
        Steps, batch size, optimizer, learning rate, seed, loss.
    name : str
        Label in tables and legends.
    recorder : Recorder or None
        Records into this recorder (left open at the end); by default the run makes its own
        and closes it when the run ends, so no hook outlives the run.

    Notes
    -----
    ``start()`` returns at once; ``stop()``, ``pause()`` and ``resume()`` act between two
    steps. Any exception ends the run as ``FAILED`` with ``error`` and ``message`` set; a
    NaN or Inf loss ends it as ``DIVERGED``. ``history`` stays readable after the end.
    """

    def __init__(
        self,
        model: nn.Module,
        data: Dataset | tuple[Any, Any] | Iterable[Any],
        config: TrainConfig | None = None,
        *,
        name: str = "baseline",
        recorder: Recorder | None = None,
    ) -> None:
        self.model, self.name = model, name
        self.config = config if config is not None else TrainConfig()
        self.recorder = recorder
        self._owns_recorder = recorder is None
        self._data = data
        self.state = RunState.IDLE
        self.error: GradWidgetError | None = None
        self.message = "Not started yet."
        self.step = 0
        self.total_steps: int | None = self.config.steps if self.config.epochs is None else None
        self.loss: float | None = None
        self.accuracy: float | None = None
        self.test_accuracy: float | None = None
        self._lock = threading.Lock()
        self._stop_requested = threading.Event()
        self._may_run = threading.Event()  # cleared while paused
        self._may_run.set()
        self._thread: threading.Thread | None = None
        self._worker: threading.Thread | None = None  # the thread running the loop
        # Set once the run has ended and released its hooks. join() waits on this rather than
        # Thread.join: on CPython <= 3.12 a Ctrl-C that interrupts Thread.join marks the
        # thread as stopped, and every later join returns at once while it still trains.
        self._done = threading.Event()
        self._began: float | None = None
        self._ended: float | None = None
        self._paused_s = 0.0
        self._pause_began: float | None = None
        self._evaluated_at = -1

    # -- control -------------------------------------------------------------------------

    def start(self) -> Run:
        """Train on a daemon thread; returns at once (``self``, for chaining).

        Raises
        ------
        RuntimeError
            If the run was started before: make a new ``Run`` to train again.
        """
        self._claim()
        if self._set_up():
            self._thread = threading.Thread(
                target=self._execute, name=f"gradwidget-{self.name}", daemon=True
            )
            self._thread.start()
        return self

    def stop(self, timeout: float | None = 1.0) -> RunState:
        """Ask the run to stop after the current step and wait up to ``timeout`` seconds."""
        self._stop_requested.set()
        with self._lock:
            self._may_run.set()  # a paused loop must wake up to see the request
            if self.state is RunState.IDLE:
                self._end_locked(RunState.STOPPED, "Stopped before it started.")
                self._done.set()
        if self._worker is not threading.current_thread():
            self.join(timeout)
        return self.state

    def pause(self) -> None:
        """Hold the run after the current step (no effect unless it is running)."""
        with self._lock:
            if self.state is RunState.RUNNING:
                self.state, self.message = RunState.PAUSED, f"Paused after step {self.step}."
                self._may_run.clear()

    def resume(self) -> None:
        """Continue a paused run."""
        with self._lock:
            if self.state is RunState.PAUSED:
                self.state, self.message = RunState.RUNNING, "Training."
                self._may_run.set()

    def join(self, timeout: float | None = None) -> RunState:
        """Wait for the run to end (at most ``timeout`` seconds); the state then.

        Returns at once for a run that was never started.
        """
        if self.state is not RunState.IDLE:
            self._done.wait(timeout)
        return self.state

    # -- read-outs -----------------------------------------------------------------------

    @property
    def history(self) -> History:
        """A snapshot of everything recorded so far (empty before the start)."""
        return self.recorder.history if self.recorder is not None else History(())

    @property
    def wall_time(self) -> float:
        """Seconds spent training, pauses excluded."""
        if self._began is None:
            return 0.0
        now = self._ended if self._ended is not None else time.perf_counter()
        pausing = self._pause_began
        paused = self._paused_s + (now - pausing if pausing is not None else 0.0)
        return max(0.0, now - self._began - paused)

    @property
    def steps_per_s(self) -> float:
        """Training speed so far."""
        seconds = self.wall_time
        return self.step / seconds if seconds > 0 else 0.0

    def __repr__(self) -> str:
        total = "?" if self.total_steps is None else self.total_steps
        return f"Run({self.name!r}, {self.state.value}, step {self.step}/{total})"

    # -- the loop ------------------------------------------------------------------------

    def _claim(self) -> None:
        with self._lock:
            if self.state is not RunState.IDLE:
                raise RuntimeError(
                    f"Run {self.name!r} cannot start: it is {self.state.value} already. "
                    "A run trains once: create a new Run to train again."
                )
            self.state, self.message = RunState.RUNNING, "Training."

    def _set_up(self) -> bool:
        """Read the data, build the optimizer and the recorder; False if that failed."""
        try:
            self._source = as_source(self._data)
            self._stepper = Stepper(
                self.model, self._optimizer_factory(), self.config.loss_fn, self.config.clip_grad
            )
            per_epoch = self._source.batches_per_epoch(self.config.batch_size)
            if self.config.epochs is not None and per_epoch is not None:
                self.total_steps = self.config.epochs * per_epoch
            if self.recorder is None:
                # Sampled by step count, not by the clock: one seed, one history, anywhere.
                budget = StepBudget(self.total_steps)
                self.recorder = Recorder(self.model, act_every=self.config.act_every, budget=budget)
        except Exception as exc:
            self._fail(exc)
            self._release()
            return False
        return True

    def _optimizer_factory(self) -> Any:
        chosen = self.config.optimizer
        if callable(chosen):
            return chosen
        return lambda params: OPTIMIZERS[chosen](params, lr=self.config.lr)

    def _execute(self) -> None:
        """The whole run: every way out ends in a final state and removes the hooks."""
        self._worker = threading.current_thread()
        try:
            self._loop()
        except KeyboardInterrupt:
            self._end(RunState.STOPPED, messages.interrupted(self))
        except Exception as exc:
            self._fail(exc)
        finally:
            self._release()

    def _loop(self) -> None:
        self._began = time.perf_counter()
        generator = torch.Generator().manual_seed(self.config.seed)
        source: BatchSource = self._source
        for x, y in source.batches(self.config.batch_size, generator, self.config.epochs):
            if self._stop_or_wait():
                self._evaluate()
                return self._end(RunState.STOPPED, messages.stopped(self))
            if not self._train_step(x, y):
                return self._end(RunState.DIVERGED, messages.diverged(self))
            if self.total_steps is not None and self.step >= self.total_steps:
                break
        if self.step == 0:
            raise DataError(messages.NO_BATCHES)
        self._evaluate()
        self._end(RunState.FINISHED, messages.finished(self))

    def _train_step(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        """One step and its read-outs; False if the loss is no longer finite."""
        every = self.config.act_every
        result = self._stepper.step(
            x, y, self.recorder.capture, measure_accuracy=self.step % every == 0
        )
        self.step += 1
        self.loss = result.loss  # the recorder keeps every step's loss as ``train_loss``
        if not math.isfinite(result.loss):
            return False
        if result.accuracy is not None:
            self.accuracy = result.accuracy
            self.recorder.live.append("accuracy", self._axis_step, result.accuracy)
        if self.step % self.config.eval_every == 0:
            self._evaluate()
        return True

    @property
    def _axis_step(self) -> int:
        """The history step of the latest capture (the recorder counts from 0)."""
        return max(self.step - 1, 0)

    def _evaluate(self) -> None:
        if self._evaluated_at == self.step:
            return
        self._evaluated_at = self.step
        accuracy = self._stepper.evaluate(self._source)
        if accuracy is not None:
            self.test_accuracy = accuracy
            self.recorder.live.append("test_accuracy", self._axis_step, accuracy)

    def _stop_or_wait(self) -> bool:
        """Block while paused (time not counted); True when a stop was requested."""
        if not self._may_run.is_set():
            self._pause_began = time.perf_counter()
            self._may_run.wait()
            self._paused_s += time.perf_counter() - self._pause_began
            self._pause_began = None
        return self._stop_requested.is_set()

    def _fail(self, exc: BaseException) -> None:
        if not isinstance(exc, GradWidgetError):
            error = TrainingError(messages.crashed(self, exc))
            error.__cause__ = exc
            exc = error
        self.error = exc
        self._end(RunState.FAILED, str(exc))

    def _end(self, state: RunState, message: str) -> None:
        with self._lock:
            self._end_locked(state, message)

    def _end_locked(self, state: RunState, message: str) -> None:
        self.state, self.message = state, message
        self._ended = time.perf_counter() if self._began is not None else None

    def _release(self) -> None:
        """Remove the hooks of the recorder the run made, then let join() return."""
        if self._owns_recorder and self.recorder is not None:
            self.recorder.close()
        self._done.set()


def train(model: nn.Module, data: Dataset | tuple[Any, Any] | Iterable[Any], **config: Any) -> Run:
    """Train ``model`` in the calling thread (blocking) and return the finished :class:`Run`.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place.
    data : Dataset, (X, y) or iterable of (x, y) batches
        As for :class:`Run`.
    **config
        Fields of :class:`TrainConfig` (``steps``, ``lr``, ``optimizer``, ``seed``, ...).

    Returns
    -------
    Run
        Also when the loss diverged (``run.state is RunState.DIVERGED``) or Ctrl-C stopped it.

    Raises
    ------
    DataError, TrainingError
        If the run failed; the message is the run's ``message``.
    """
    run = Run(model, data, TrainConfig(**config))
    run._claim()
    if run._set_up():
        run._execute()
    if run.state is RunState.FAILED:
        assert run.error is not None
        raise run.error
    return run
