"""Record per-layer gradient norms, update ratios and activation statistics from any model.

The cost model drives the design (measured in ``docs/performance.md``):

* Gradients are read from ``p.grad`` after backward, never with full backward hooks: those
  cost about 1.24x a step and raise on in-place modules such as ``ReLU(inplace=True)``.
* All per-parameter norms come from one fused ``torch._foreach_norm``; everything due at a step
  crosses to the host in **one** transfer (:mod:`gradwidget.record._transfer`), asynchronous
  on CUDA.
* Forward hooks slow every module call, even when they return at once, so they are attached
  only for the forward pass of a sampled step and removed at the next ``capture``.
* On tiny steps even one fused capture is a few percent of the step, so by default gradient
  captures, activation samples and update ratios share one time ``budget``
  (:mod:`gradwidget.record._budget`); a per-step tick of the loss and a sentinel norm
  (:mod:`gradwidget.record._tick_ring`) forces a full capture when either jumps, so sampling
  never loses a burst.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import GradWidgetError
from ..history import History
from ..logs.writer import LogWriter
from ._amp import AmpState, read_scaler
from ._budget import DEFAULT_BUDGET, Schedule, StepBudget, StepKind
from ._layers import Layers, UpdateTracker, find_layers, squares
from ._measure import measures
from ._memory import history_capacity, parameter_bytes
from ._tick_ring import Ticks, TickTag, as_loss
from ._transfer import HostLink
from .activations import ActivationProbe
from .distributed import Scope, check_parameters, local, unwrap

__all__ = ["Recorder"]

_SQUARED = ("grad_sq", "weight_sq", "update_sq")  # the parts stage (b) may reduce
_TICK = StepKind.of(False, False, False)  # a step that only leaves its tick


@dataclass(frozen=True)
class _Tag:
    """What the host needs to read one transfer: its step, who had a gradient, its ticks."""

    step: int
    present: tuple[int, ...]
    ticks: TickTag | None
    grads: bool = False  # gradient norms were captured at ``step`` (with the loss, if given)


class Recorder:
    """Record per-layer gradient health of a model, step by step.

    Parameters
    ----------
    model : torch.nn.Module
        Any module. A *layer* is a submodule that owns parameters directly.
    act_every : int or None
        Sample activation statistics and update ratios at most every this many steps (None or
        0: never); the budget may space them further.
    capacity : int, optional
        Buckets kept per series in the bounded :class:`~gradwidget.History`. None: as many as
        keep everything recording holds within 1 % of the model's parameter bytes (64 to 1024;
        a model under 10M parameters may keep 256 KB), see :mod:`gradwidget.record._memory`.
    budget : float, StepBudget or None
        Largest fraction of a training step that recording may cost, all of it together:
        gradient captures, activation samples, update ratios and the per-step tick, counted
        from step 0 (default 2 %). A
        :class:`~gradwidget.record._budget.StepBudget` (what a training ``Run`` uses):
        intervals from the step count alone, the same on any machine. None:
        gradients every step and activations every ``act_every`` steps. Under FSDP2 always
        None: every rank must capture the same steps (see :mod:`gradwidget.record.distributed`).
    log_dir : str or Path, optional
        Also append everything recorded to the log in this folder (see
        :mod:`gradwidget.logs.writer`), which :func:`gradwidget.open_log` and
        :meth:`gradwidget.GradPanel.follow` read, also while the job runs. Under
        ``torch.distributed`` only rank 0 writes it.
    measure : str or iterable of str, optional
        What to measure: any of ``"gradients"`` (``grad_norm``, ``nonfinite``, ``loss``),
        ``"activations"`` (``act_mean``, ``act_std``, ``dead_frac``, ``saturated_frac``) and
        ``"updates"`` (``weight_norm``, ``update_ratio``). None: all three, what the panel
        shows. Nothing is computed for a tier left out; ``train_loss`` is always recorded.

    Examples
    --------
    >>> with Recorder(model) as rec:                      # doctest: +SKIP
    ...     for x, y in batches:
    ...         opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward()
    ...         rec.capture(loss)
    ...         opt.step()
    >>> rec.history.grad_norm                             # doctest: +SKIP
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        act_every: int | None = 10,
        capacity: int | None = None,
        budget: float | StepBudget | None = DEFAULT_BUDGET,
        log_dir: str | Path | None = None,
        measure: str | Iterable[str] | None = None,
    ) -> None:
        model = unwrap(model)  # DDP's wrapper: the layers are the user's module's
        found = find_layers(model)
        if not found:
            raise GradWidgetError(
                f"{type(model).__name__} has no parameters, so there are no gradients to "
                "record. Attach the recorder to the model you train."
            )
        self.model = model
        self.measure = measures(measure)
        samples = bool({"activations", "updates"} & self.measure)
        self.act_every = (act_every or 0) if samples else 0
        self._sampling = bool(self.act_every)  # this step's forward pass is a sample
        # Every rank must join each capture's collective: no per-rank adaptive interval.
        self._scope = Scope.of([p for layer in found for p in layer.params])
        self._records = self._scope.records  # read on every step: one attribute, no property
        self.budget = budget = None if self._scope.sharded else budget
        self.step = 0
        self._set_layers(Layers(found))
        if capacity is None:
            size = parameter_bytes(self._layers.params)
            capacity = history_capacity(size, len(found), self.measure)
        self._capacity = capacity
        self._ordered = False
        self._history = History(self.layers, capacity)
        self._probe = ActivationProbe(model, [(layer.name, layer.module) for layer in found])
        self._schedule = Schedule(budget, self.act_every)
        # On CPU the budget is CPU time of the training thread: on a shared machine the wall
        # clock also counts the time other processes take, and mostly in the (longer) step,
        # which would let recording spend more than its share. On a GPU the host waits on the
        # device, so wall time is the step.
        cpu = self._layers.device.type == "cpu"
        self._clock = time.thread_time if cpu else time.perf_counter
        self._updates = UpdateTracker()
        if "updates" in self.measure and self.act_every and self._records:
            self._updates.prepare(self._layers.params, self._layers.device)
        self._link = HostLink(self._layers.device)
        self._ticks = Ticks(self._layers.device)
        self._host_ticks = cpu  # ticks read as made: a quiet step needs no transfer either
        self._quiet_until = 0  # steps before this one only leave their tick (see capture)
        self._lock = threading.Lock()  # a reader thread may drain while the loop captures
        self._closed = False
        #: Stage (b): None, or ``flat -> flat`` summing the squared norms across processes.
        self.reduce_squares: Callable[[torch.Tensor], torch.Tensor] | None = (
            self._scope.reduce_squares if self._scope.sharded else None  # FSDP2
        )
        self._log = LogWriter(log_dir) if log_dir is not None and self._scope.writes else None
        if self._records:  # elsewhere (DDP ranks > 0) the recorder costs nothing
            self._probe.arm()  # step 0 is always sampled: it also tells the execution order

    # -- public -------------------------------------------------------------------------------

    @property
    def layers(self) -> tuple[str, ...]:
        """Layer names, input to output (execution order once a step has been captured)."""
        return self._layers.names

    @property
    def history(self) -> History:
        """A snapshot of everything recorded so far, safe to keep and read anywhere.

        Waits for values still on their way from the device (see :meth:`flush`).
        """
        self.flush()
        return self._history.snapshot()

    def flush(self) -> None:
        """Land every value still on its way to the host in :attr:`live`.

        The only wait on a GPU, and it holds the lock that :meth:`capture` takes: a poller
        that redraws many times a second reads :attr:`live` instead, which lags by at most
        the tick ring (8 steps of ``train_loss``, 32 on CPU) and one transfer.
        """
        if not self._closed:
            with self._lock:
                self._drain()

    @property
    def live(self) -> History:
        """The history being written (poll its ``version``; read it through copies)."""
        return self._history

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has removed the hooks."""
        return self._closed

    @property
    def grad_every(self) -> int:
        """The gradient sampling interval in use (raised when captures exceed the budget)."""
        return self._schedule.grad_every

    @grad_every.setter
    def grad_every(self, value: int) -> None:
        self._schedule.grad_every = value

    @property
    def act_interval(self) -> int:
        """The activation sampling interval in use: ``act_every``, widened by the budget."""
        return self._schedule.act_interval

    @property
    def transfers(self) -> int:
        """Device-to-host transfers made so far (one per flush, whatever it carries)."""
        return self._link.transfers

    def capture(
        self, loss: torch.Tensor | float | None = None, *, force: bool = False, scaler: Any = None
    ) -> None:
        """Record this step. Call after ``loss.backward()`` and before ``optimizer.step()``.

        Parameters
        ----------
        loss : torch.Tensor or float, optional
            The step's loss: recorded every step (``train_loss``), and with the gradients.
        force : bool
            Capture the gradients even if the sampling interval skips this step (e.g. the
            step whose loss turned NaN: the evidence must not fall between samples).
        scaler : torch.amp.GradScaler, optional
            Under AMP, the scaler: gradient norms are then reported unscaled, whether or not
            ``scaler.unscale_(optimizer)`` ran already, and the steps it skips are recorded
            (``amp_skipped``, ``amp_scale``).
        """
        if self._closed:
            raise GradWidgetError("This recorder is closed; create a new one to record again.")
        if not self._records:
            self.step += 1
            return
        ticked = False
        if self.step < self._quiet_until and not force and scaler is None:
            # Most steps only leave their tick, read here without a clock, a schedule or a
            # transfer: in the loop every call costs about half a microsecond (cold caches
            # after backward), and this ran at 26 us a step, 2 % of a 1.4 ms Lightning step.
            with self._lock:
                force = self._ticks.record(self.step, loss, self._sentinel_grad(), None)
                if not (force or self._ticks.full):
                    self.step += 1
                    return
            ticked = True  # a jump (capture it) or a full ring (land it): the whole path
        entered = self._clock()
        amp = None if scaler is None else read_scaler(scaler)
        with self._lock:
            kind = self._capture(loss, force, amp, ticked)
        self._schedule.observe(self.step - 1, entered, self._clock(), kind)
        # Until then nothing is due, no step is timed, and the ticks are read on the host.
        quiet = self._host_ticks and kind is _TICK and self._ordered
        self._quiet_until = self._schedule.quiet_until(self.step) if quiet else 0

    def close(self) -> None:
        """Remove every hook this recorder added. Safe to call more than once."""
        self.flush()
        self._probe.remove()
        self._probe.take()
        self._updates.clear()
        if self._log is not None:
            self._log.close()
        self._closed = True

    remove = close

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"step {self.step}"
        return f"Recorder({len(self.layers)} layers, {state}, grad_every={self.grad_every})"

    # -- one step, in stages ------------------------------------------------------------------
    #
    # (a) _measure: per-parameter SQUARED norms and statistics, on the parameters' device;
    # (b) _reduce: sums of squares combined across processes (identity unless set);
    # (c) HostLink.send / receive: the one device-to-host transfer, asynchronous on CUDA;
    # (d) _append: host values into the History, through _emit.
    # Squares stay squares until (d): partial sums of squares add up across shards, norms do not.

    def _capture(self, loss: Any, force: bool, amp: AmpState | None, ticked: bool) -> StepKind:
        """One step's capture; ``ticked``: its tick is recorded already."""
        if not self._ordered:
            self._fix_order()
        step = self.step
        alarm = False
        if not ticked:
            scale = None if amp is None else amp.scale
            alarm = self._ticks.record(step, loss, self._sentinel_grad(), scale)
        kind = StepKind.of(
            "gradients" in self.measure and self._schedule.grads_due(step, force or alarm),
            self._sampling,
            self._updates.pending,
        )
        parts: dict[str, torch.Tensor] = {}
        present: tuple[int, ...] = ()
        if kind is not _TICK:  # most steps only leave their tick: nothing to measure
            parts, present = self._measure(kind, loss, amp)
            parts = self._reduce(parts)
        self._flush(step, present, parts, kind.grads)
        self.step += 1
        self._rearm()
        return kind

    def _set_layers(self, layers: Layers) -> None:
        self._layers = layers
        # Looked up once: read on every step, the lookup cost 2 us of a 19 us tick in the loop.
        self._sentinel = layers.sentinel if "gradients" in self.measure else None

    def _sentinel_grad(self) -> torch.Tensor | None:
        """The sentinel parameter's gradient (this rank's shard), or None."""
        grad = None if self._sentinel is None else self._sentinel.grad
        return None if grad is None else local(grad)

    def _measure(
        self, kind: StepKind, loss: Any, amp: AmpState | None
    ) -> tuple[dict[str, torch.Tensor], tuple[int, ...]]:
        """Stage (a): what is due, as device tensors; and which parameters have a gradient."""
        parts: dict[str, torch.Tensor] = {}
        params, device = self._layers.params, self._layers.device
        present: tuple[int, ...] = ()
        if kind.grads:
            if (value := as_loss(loss, device)) is not None:
                parts["loss"] = value.reshape(1)
            present = tuple(i for i, p in enumerate(params) if p.grad is not None)
            if present:
                grad_sq = squares([params[i].grad for i in present], device)
                parts["grad_sq"] = grad_sq if amp is None else amp.unscale_squares(grad_sq)
        if kind.update:
            parts.update(self._updates.measure(params, device))
        if kind.hooked:
            if "activations" in self.measure:
                parts.update(self._probe.rows(self.layers, device))
            if "updates" in self.measure:
                self._updates.keep(params, device)
            self._schedule.sampled(self.step)
        if "activations" not in self.measure:
            self._probe.forget()  # the first step's outputs: hooked only for the order
        return parts, present

    def _reduce(self, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Stage (b): apply ``reduce_squares`` to every squared-norm part, in one call.

        ``reduce_squares`` is None in a single process. When each process holds a shard of
        every gradient (FSDP2), it is one ``all_reduce`` (sum) of the flat tensor of local sums
        of squares: the per-layer norm is then the root of the global sum.
        """
        names = [name for name in _SQUARED if name in parts]
        if self.reduce_squares is None or not names:
            return parts
        flat = self.reduce_squares(torch.cat([parts[name] for name in names]))
        sizes = [parts[name].numel() for name in names]
        return {**parts, **dict(zip(names, flat.split(sizes), strict=True))}

    def _flush(
        self, step: int, present: tuple[int, ...], parts: dict[str, torch.Tensor], grads: bool
    ) -> None:
        """Stage (c): one transfer of what is due, ticks riding along; then read what landed.

        A step with nothing due and room left in the tick ring makes no transfer at all.
        """
        if parts or grads or self._ticks.full:  # a capture without gradients still has its row
            self._send(_Tag(step, present, None, grads), parts)
        if self._link.pending:
            for landed in self._link.receive():
                self._append(landed.tag, landed.values)

    def _send(self, tag: _Tag, parts: dict[str, torch.Tensor]) -> None:
        """Send ``parts`` with the ticks kept so far; ticks already on the host (CPU) and
        nothing else due: straight into the history, no transfer."""
        ticks, tick_tag = self._ticks.drain()
        tag = dataclasses.replace(tag, ticks=tick_tag)
        if parts or ticks or tag.grads:
            self._link.send({**parts, **ticks}, tag)
        elif tick_tag is not None:
            self._append(tag, {})

    def _drain(self) -> None:
        """Send the ticks kept so far and wait for every transfer to land."""
        self._send(_Tag(self.step, (), None), {})
        for landed in self._link.receive(wait=True):
            self._append(landed.tag, landed.values)

    def _append(self, tag: _Tag, values: dict[str, np.ndarray]) -> None:
        """Stage (d): per-layer values from per-parameter squares, into the history."""
        step, layers = tag.step, self._layers
        if tag.ticks is not None:
            self._ticks.land(tag.ticks, values.pop("ticks", None), self._emit)
        if tag.grads:
            norms = layers.per_layer(values.pop("grad_sq", np.zeros(0)), list(tag.present))
            if "loss" in values:  # no loss given: none recorded (a NaN would read as diverged)
                self._emit("loss", [step], values.pop("loss"))
            self._emit("grad_norm", [step], [norms])
            exact = self._link.synchronous  # the gradients are still the captured ones
            counts = self._scope.total(layers.count_nonfinite(norms, exact), norms)
            self._emit("nonfinite", [step], [counts])
        if "update_sq" in values:
            weight, ratio = layers.update_ratio(values.pop("weight_sq"), values.pop("update_sq"))
            # The update belongs to the sampled step, before the optimizer moved the weights.
            self._emit("weight_norm", [step - 1], [weight])
            self._emit("update_ratio", [step - 1], [ratio])
        for name, row in values.items():  # activation statistics
            self._emit(name, [step], [row])

    def _emit(self, name: str, steps: list[int], rows: Any) -> None:
        """Where every recorded point leaves the recorder (one place for any other sink too):
        one row per step of ``steps``."""
        self._history.extend(name, steps, rows)

    def _rearm(self) -> None:
        """Hooks exist only for the forward pass of a sampled step that reads activations."""
        self._probe.disarm()
        self._sampling = self._schedule.acts_due(self.step)
        if self._sampling and "activations" in self.measure:
            self._probe.arm()

    def _fix_order(self) -> None:
        """Order layers by first execution; layers that never ran keep registration order."""
        rank = {name: i for i, name in enumerate(self._probe.execution_order)}
        big = len(rank)
        check_parameters(self._layers.layers)
        found = sorted(self._layers.layers, key=lambda layer: rank.get(layer.name, big))
        self._set_layers(Layers(found))
        self._ordered = True
        if self.layers != self._history.layers:
            self._history = History(self.layers, self._capacity)
        if self._log is not None:
            self._log.start(self._layers.layers, self._history)
