"""Record per-layer gradient norms, update ratios and activation statistics from any model.

The cost model drives the design (measured in ``shared/NOTES.md``):

* Gradients are read from ``p.grad`` after backward, never with full backward hooks: those
  cost about 1.24x a step and raise on in-place modules such as ``ReLU(inplace=True)``.
* All per-parameter norms come from one fused ``torch._foreach_norm`` and a segment sum on the
  parameters' device, then **one** host transfer per captured step. A ``.item()`` per parameter
  is a blocking round trip on a GPU.
* Forward hooks slow every module call, even when they return at once, so they are attached
  only for the forward pass of a sampled step and removed at the next ``capture``.
* On tiny steps even one fused capture is a few percent of the step, so by default the
  recorder measures its own cost and widens the gradient sampling interval to stay within
  ``budget``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._transfer import HostLink
from .activations import FIELDS as ACTIVATION_FIELDS
from .activations import ActivationProbe
from .distributed import Scope, check_parameters, local, unwrap
from .errors import GradWidgetError
from .history import History
from .log import LogWriter

__all__ = ["Recorder"]

_MAX_GRAD_EVERY = 64  # never let adaptive sampling thin the gradient series more than this
_WARMUP_CAPTURES = 5  # first captures pay one-off costs; keep them out of the cost estimate
_SQUARED = frozenset({"grad_sq", "weight_sq", "update_sq"})  # parts stage (b) may reduce


@dataclass(frozen=True)
class _Layer:
    name: str
    module: nn.Module
    params: tuple[nn.Parameter, ...]


def _find_layers(model: nn.Module) -> list[_Layer]:
    """Modules owning parameters directly, in registration order; a tied weight counts once."""
    seen: set[int] = set()
    layers = []
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        if own:
            layers.append(_Layer(name or type(module).__name__, module, tuple(own)))
    return layers


def _squares(tensors: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """Squared L2 norm of each tensor, from one fused norm, stacked on ``device`` in float32."""
    norms = torch._foreach_norm([local(t) for t in tensors])  # a DTensor's own shard
    try:
        stacked = torch.stack(norms)
    except RuntimeError:  # parameters of several dtypes or devices
        stacked = torch.stack([n.to(device, torch.float32) for n in norms])
    return stacked.float().square()


class Recorder:
    """Record per-layer gradient health of a model, step by step.

    Parameters
    ----------
    model : torch.nn.Module
        Any module. A *layer* is a submodule that owns parameters directly.
    act_every : int or None
        Sample activation statistics and update ratios every this many steps (None or 0: never).
    capacity : int
        Points kept per series in the bounded :class:`~gradwidget.History`.
    budget : float or None
        Largest fraction of a training step that gradient captures may cost; when one capture
        costs more, gradients are captured every ``grad_every`` steps instead. None: every step.
        Under FSDP2 every step is captured (see :mod:`gradwidget.distributed`).
    log_dir : str or Path, optional
        Also append everything recorded to the log in this folder (see :mod:`gradwidget.log`),
        which :func:`gradwidget.open_log` and :meth:`gradwidget.GradPanel.follow` read, also
        while the job runs. Under ``torch.distributed`` only rank 0 writes it.

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
        capacity: int = 1024,
        budget: float | None = 0.03,
        log_dir: str | Path | None = None,
    ) -> None:
        model = unwrap(model)
        self._all_layers = _find_layers(model)
        if not self._all_layers:
            raise GradWidgetError(
                f"{type(model).__name__} has no parameters, so there are no gradients to "
                "record. Attach the recorder to the model you train."
            )
        self.model = model
        self.act_every = act_every or 0
        # Every rank must join each capture's collective: no per-rank adaptive interval.
        self._scope = Scope.of([p for layer in self._all_layers for p in layer.params])
        self.budget = None if self._scope.sharded else budget
        self.step = 0
        self.grad_every = 1
        self._last_grads: int | None = None  # step of the latest gradient capture
        self._capacity = capacity
        self._layers = self._all_layers
        self._ordered = False
        self._history = History(self.layers, capacity)
        self._probe = ActivationProbe(model, [(layer.name, layer.module) for layer in self._layers])
        # Weights at the sampled step, in buffers reused from sample to sample: allocating a
        # copy of every parameter each time costs page faults on CPU.
        self._before_update: list[torch.Tensor] = []
        self._weight_sq: torch.Tensor | None = None  # set while an update is pending
        self._link = HostLink(self._all_layers[0].params[0].device)
        #: Stage (b): None, or a function that sums the flat tensor of squared norms across
        #: processes (in place or not) and returns it; see ``_reduce``.
        self.reduce_squares: Callable[[torch.Tensor], torch.Tensor] | None = (
            self._scope.reduce_squares if self._scope.sharded else None  # FSDP2
        )
        self._closed = False
        self._cost = _CostMeter()
        self._log = LogWriter(log_dir) if log_dir is not None and self._scope.writes else None
        if self._scope.records:  # elsewhere (DDP ranks > 0) the recorder costs nothing
            self._probe.arm()  # step 0 is always sampled: it also tells the execution order

    # -- public -------------------------------------------------------------------------------

    @property
    def layers(self) -> tuple[str, ...]:
        """Layer names, input to output (execution order once a step has been captured)."""
        return tuple(layer.name for layer in self._layers)

    @property
    def history(self) -> History:
        """A snapshot of everything recorded so far, safe to keep and read anywhere."""
        return self._history.snapshot()

    @property
    def live(self) -> History:
        """The history being written (poll its ``version``; read it through copies)."""
        return self._history

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has removed the hooks."""
        return self._closed

    def capture(self, loss: torch.Tensor | float | None = None, *, force: bool = False) -> None:
        """Record this step. Call after ``loss.backward()`` and before ``optimizer.step()``.

        Parameters
        ----------
        loss : torch.Tensor or float, optional
            The step's loss; recorded alongside the gradient norms.
        force : bool
            Capture the gradients even if the sampling interval skips this step (e.g. the
            step whose loss turned NaN: the evidence must not fall between samples).
        """
        if self._closed:
            raise GradWidgetError("This recorder is closed; create a new one to record again.")
        if not self._scope.records:
            self.step += 1
            return
        started = time.perf_counter()
        if not self._ordered:
            self._fix_order()
        step = self.step
        # Counted from the last capture, not `step % grad_every`: when the interval changes,
        # a modulo schedule can leave a gap of almost twice the interval.
        last = self._last_grads
        grads_due = force or last is None or step - last >= self.grad_every
        if grads_due:
            self._last_grads = step
        acts_due = bool(self.act_every) and step % self.act_every == 0
        plain = grads_due and not acts_due and self._weight_sq is None
        self._flush(step, grads_due, acts_due, loss)
        self.step += 1
        self._rearm()
        # Sampled steps and the step after them also pay for activation statistics and
        # update ratios; the gradient interval is set from plain gradient captures only.
        self._adapt(started, plain)

    def close(self) -> None:
        """Remove every hook this recorder added. Safe to call more than once."""
        self._probe.remove()
        self._probe.take()
        self._before_update, self._weight_sq = [], None
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
        return f"Recorder({len(self._layers)} layers, {state}, grad_every={self.grad_every})"

    # -- one captured step, in stages ---------------------------------------------------------
    #
    # (a) _measure: per-parameter SQUARED norms and statistics, on the parameters' device;
    # (b) _reduce: sums of squares combined across processes (identity unless set);
    # (c) HostLink.send / receive: the one device-to-host transfer, asynchronous on CUDA;
    # (d) _append: host values into the History, through _emit.
    # Squares stay squares until (d): partial sums of squares add up across shards, norms do not.

    def _flush(self, step: int, grads_due: bool, acts_due: bool, loss: Any) -> None:
        """Run stages (a) to (d) for ``step``."""
        parts, present = self._measure(grads_due, acts_due, loss)
        parts = self._reduce(parts)
        if parts:
            self._link.send(parts, (step, present))
        for landed in self._link.receive():
            self._append(*landed.tag, landed.values)

    def _measure(
        self, grads_due: bool, acts_due: bool, loss: Any
    ) -> tuple[dict[str, torch.Tensor], list[int]]:
        """Stage (a): what is due, as device tensors; and which parameters have a gradient."""
        parts: dict[str, torch.Tensor] = {}
        device = self._param_list[0].device
        present: list[int] = []
        if grads_due:
            parts["loss"] = _loss_value(loss)
            present = [i for i, p in enumerate(self._param_list) if p.grad is not None]
            if present:
                grads = [self._param_list[i].grad for i in present]
                parts["grad_sq"] = _squares(grads, device)
        if self._weight_sq is not None:
            parts.update(self._update_squares(device))
        if acts_due:
            parts.update(self._activation_rows(device))
            self._keep_weights(device)
        return parts, present

    def _reduce(self, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Stage (b): apply ``reduce_squares`` to every squared-norm part, in one call.

        ``reduce_squares`` is None in a single process. When each process holds a shard of
        every gradient (FSDP2), it is one ``all_reduce`` (sum) of the flat tensor of local sums
        of squares: the per-layer norm is then the root of the global sum.
        """
        names = [name for name in parts if name in _SQUARED]
        if self.reduce_squares is None or not names:
            return parts
        flat = self.reduce_squares(torch.cat([parts[name] for name in names]))
        sizes = [parts[name].numel() for name in names]
        return {**parts, **dict(zip(names, flat.split(sizes), strict=True))}

    def _append(self, step: int, present: list[int], values: dict[str, np.ndarray]) -> None:
        """Stage (d): per-layer values from per-parameter squares, into the history."""
        if "loss" in values:
            norms = self._per_layer(values.pop("grad_sq", np.zeros(0)), present)
            self._emit("loss", step, values.pop("loss"))
            self._emit("grad_norm", step, norms)
            self._emit("nonfinite", step, self._count_nonfinite(norms))
        if "update_sq" in values:
            everything = list(range(len(self._param_list)))
            weight = self._per_layer(values.pop("weight_sq"), everything)
            moved = self._per_layer(values.pop("update_sq"), everything)
            # The update belongs to the sampled step, before the optimizer moved the weights.
            self._emit("weight_norm", step - 1, weight)
            ratio = np.divide(moved, weight, out=np.full_like(moved, np.nan), where=weight > 0)
            self._emit("update_ratio", step - 1, ratio)
        for name, row in values.items():  # activation statistics
            self._emit(name, step, row)

    def _emit(self, name: str, step: int, values: Any) -> None:
        """Where every recorded point leaves the recorder (one place for any other sink too)."""
        self._history.append(name, step, values)

    def _per_layer(self, squares: np.ndarray, present: list[int]) -> np.ndarray:
        """Per-layer L2 norm: root of the sum of the layer's squared norms (NaN: none)."""
        owner = self._owner[present]
        total = np.bincount(owner, squares.astype(np.float64), len(self._layers))
        has_grad = np.bincount(owner, minlength=len(self._layers)) > 0
        return np.where(has_grad, np.sqrt(total), np.nan)

    def _keep_weights(self, device: torch.device) -> None:
        params = [local(p.detach()) for p in self._param_list]
        if [b.shape for b in self._before_update] != [p.shape for p in params]:
            self._before_update = [torch.empty_like(p) for p in params]
        torch._foreach_copy_(self._before_update, params)
        self._weight_sq = _squares(params, device)

    def _update_squares(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Squared norms of the weights at the sample and of the step the optimizer took since."""
        weight, self._weight_sq = self._weight_sq, None
        moved = self._before_update
        torch._foreach_sub_(moved, [local(p.detach()) for p in self._param_list])  # no copy
        return {"weight_sq": weight, "update_sq": _squares(moved, device)}

    def _activation_rows(self, device: torch.device) -> dict[str, torch.Tensor]:
        stats = self._probe.take()
        nan = torch.full((4,), math.nan, device=device)
        rows = torch.stack([stats.get(layer.name, nan).to(device) for layer in self._layers])
        return dict(zip(ACTIVATION_FIELDS, rows.T, strict=True))

    def _count_nonfinite(self, norms: np.ndarray) -> np.ndarray:
        """NaN/Inf gradient entries per layer; only counted when a norm says there are some.

        A NaN norm also means "this layer got no gradient": counting over the gradients that
        exist tells the two apart.
        """
        counts = np.zeros(len(self._layers))
        bad = np.flatnonzero(~np.isfinite(norms))  # alike on every rank: norms are reduced
        for i in bad:
            grads = [p.grad for p in self._layers[i].params if p.grad is not None]
            counts[i] = sum(int((~torch.isfinite(local(g))).sum()) for g in grads)
        return self._scope.total(counts) if bad.size else counts

    # -- sampling and its cost ----------------------------------------------------------------

    def _adapt(self, started: float, measured: bool) -> None:
        """Widen the gradient interval when captures cost more than ``budget`` of a step."""
        self._cost.observe(started, time.perf_counter(), measured)
        if self.budget is None or self.step <= _WARMUP_CAPTURES:
            return
        needed = self._cost.capture_s / max(self.budget * self._cost.step_s, 1e-12)
        self.grad_every = max(1, min(_MAX_GRAD_EVERY, math.ceil(needed)))

    def _rearm(self) -> None:
        """Hooks exist only for the forward pass of a sampled step."""
        self._probe.disarm()
        if self.act_every and self.step % self.act_every == 0:
            self._probe.arm()

    def _fix_order(self) -> None:
        """Order layers by first execution; layers that never ran keep registration order."""
        rank = {name: i for i, name in enumerate(self._probe.execution_order)}
        big = len(rank)
        check_parameters(self._all_layers)
        self._layers = sorted(self._all_layers, key=lambda layer: rank.get(layer.name, big))
        self._ordered = True
        self._param_list = [p for layer in self._layers for p in layer.params]
        self._owner = np.array([i for i, layer in enumerate(self._layers) for _ in layer.params])
        if self.layers != self._history.layers:
            self._history = History(self.layers, self._capacity)
        if self._log is not None:
            self._log.start(self._layers, self._history)


def _loss_value(loss: Any) -> torch.Tensor:
    if isinstance(loss, torch.Tensor):
        return loss.detach().reshape(-1)[:1] if loss.numel() == 1 else loss.detach().mean()
    return torch.tensor([math.nan if loss is None else float(loss)])


class _CostMeter:
    """Running estimates of one capture's cost and of a plain training step, in seconds."""

    def __init__(self, smoothing: float = 0.1) -> None:
        self.smoothing = smoothing
        self.capture_s = 0.0
        self.step_s = 0.0
        self._left_at: float | None = None

    def observe(self, entered: float, left: float, captured: bool) -> None:
        if self._left_at is not None:
            self.step_s = self._mix(self.step_s, entered - self._left_at)
        if captured:
            self.capture_s = self._mix(self.capture_s, left - entered)
        self._left_at = left

    def _mix(self, old: float, new: float) -> float:
        return new if old == 0.0 else old + self.smoothing * (new - old)
