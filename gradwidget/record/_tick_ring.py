"""Every step's loss, a sentinel gradient norm and the AMP loss scale, without a host sync.

A step that the sampling interval skips still leaves a *tick*: the loss, the L2 norm of one
small parameter's gradient (the sentinel: about a microsecond on CPU, against about 130 us for
all per-layer norms of a 10-layer MLP) and, under AMP, the scaler's scale. Ticks stay on the
device as 0-d tensors and cross to the host with the next transfer, at the latest every
``rows`` steps. On the host a :class:`Sentinel` compares each tick with the recent level of
the ticks before it; a jump (x10) or a non-finite value forces a full capture, so a burst that
moves the loss or the gradients is recorded even where sampling would skip it. On a GPU a tick
is read when it lands, at most ``rows`` steps and one flush later.

On CPU a tick is read as it is made and the capture is forced on that very step. There a tick
is plain floats: every torch op in the training loop costs microseconds of dispatch, and a
tick runs on every step, so on a 1 ms step the tensor path (a norm op, two 0-d views, a stack)
alone cost 3-5 % of the step. The loss is one ``.item()`` (none when a managed run passes the
float it read), and a small sentinel's norm is taken in Python from its values (one
``tolist()``): in a Lightning loop of 1.4 ms steps a tick went from 29-36 us to 17-21 us.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["Sentinel", "TickTag", "Ticks", "as_loss"]

Emit = Callable[[str, list[int], Any], None]  # a series, its steps, one row per step
_HOST_NORM_MAX = 64  # elements up to which a CPU sentinel's norm is taken in Python
_STRIDED = torch.strided  # read on every step: one global, not a lookup in torch's namespace


class Sentinel:
    """Says when a value jumps above ``factor`` times its recent level, or is not finite.

    The recent level is the upper decile of the last ``window`` values rather than their
    median: a loss near zero or a noisy gradient norm spreads over a decade or two from step
    to step, and a median would call that noise a jump (forcing a capture at every other
    step); a burst of x1000 clears either by far.

    Parameters
    ----------
    factor : float
        A value more than this many times the recent level is a jump.
    window : int
        Recent values the level is taken over. Jumps enter the window too, so a lasting new
        level stops raising alarms once it fills a tenth of the window.
    every : int
        The level is refreshed every this many values (sorting 32 floats: about 1 us).
    """

    def __init__(self, factor: float = 10.0, window: int = 32, every: int = 8) -> None:
        self.factor, self.every = factor, every
        self._recent: deque[float] = deque(maxlen=window)
        self._level = math.nan  # no alarm on a jump until there is a reference
        self._seen = 0

    def jumped(self, value: float) -> bool:
        """Take one value; True when it is non-finite or a jump."""
        if not math.isfinite(value):
            return True
        size = abs(value)
        alarm = size > self.factor * self._level  # False while the level is NaN
        self._recent.append(size)
        self._seen += 1
        if self._seen % self.every == 0:  # sorted(): about 1 us here, np.quantile about 20
            ordered = sorted(self._recent)
            self._level = ordered[(9 * len(ordered)) // 10]
        return alarm


@dataclass(frozen=True)
class TickTag:
    """What the host needs to read a batch of ticks: their steps and which carry a loss."""

    steps: tuple[int, ...]
    has_loss: tuple[bool, ...]
    # CPU: the ticks themselves, (loss, sentinel norm, scale) per step, read and checked by
    # the sentinel as they were made; nothing travels. None: they come in the transfer.
    rows: tuple[tuple[float, float, float], ...] | None = None


class Ticks:
    """The per-step ring of ticks and their reading on the host.

    Parameters
    ----------
    device : torch.device
        Where the gradients live. On CPU a tick is read as it is made and kept as floats;
        elsewhere it stays on the device until it rides along with a transfer.
    rows : int, optional
        Ticks kept before they must be sent (device; default 8) or written to the history
        (CPU; default 32: in the loop each write costs tens of microseconds of cold numpy
        code, 46 us measured for 8 ticks on a 0.7 ms step). Any capture takes them sooner.
    """

    def __init__(self, device: torch.device, rows: int | None = None) -> None:
        self._host = device.type == "cpu"
        self.rows = rows or (32 if self._host else 8)
        # One list per field of 0-d device tensors, stacked only when sent: in the training
        # loop every torch op costs tens of microseconds (the caches are full of the step's
        # data), so a tick makes as few as it can.
        self._losses: list[torch.Tensor] = []
        self._norms: list[torch.Tensor] = []
        self._scales: list[torch.Tensor] = []
        self._rows: list[tuple[float, float, float]] = []  # CPU: the ticks, read as made
        self._steps: list[int] = []
        self._has_loss: list[bool] = []
        self._loss, self._grad = Sentinel(), Sentinel()
        self._alarm = False  # raised by ticks that landed late (GPU), cleared when read
        # Stand-ins kept on the device: filling a new tensor every step would cost an op.
        self._nan = torch.full((), math.nan, device=device)  # no loss, no scaler
        self._no_grad = torch.full((), -1.0, device=device)  # a norm is never negative
        self._scale: float | None = None  # the last loss scale seen, to tell skipped steps
        self._scaled = False  # CPU: some tick carried a loss scale
        self._last_step = -1
        self._skipped_run = 0

    @property
    def full(self) -> bool:
        """True when the ring holds ``rows`` ticks and must be emptied (:meth:`drain`)."""
        return len(self._steps) >= self.rows

    def record(self, step: int, loss: Any, grad: torch.Tensor | None, scale: Any) -> bool:
        """Keep one tick; True when it, or an earlier landed one, is alarming.

        ``loss`` is what the user passed to ``capture`` (a tensor, a float or None); ``grad``
        the sentinel parameter's gradient or None; ``scale`` the scaler's 0-d scale tensor or
        None.
        """
        if self._host:
            return self._record_floats(step, loss, grad, scale)
        loss = as_loss(loss, self._nan.device)
        loss_t = self._nan if loss is None else loss
        norm_t = self._no_grad if grad is None else _norm(grad)
        self._losses.append(loss_t)
        self._norms.append(norm_t)
        self._scales.append(self._nan if scale is None else scale)
        self._steps.append(step)
        self._has_loss.append(loss is not None)
        alarm, self._alarm = self._alarm, False
        return alarm

    def _record_floats(self, step: int, loss: Any, grad: torch.Tensor | None, scale: Any) -> bool:
        """The CPU tick: read at once, kept on the host; True when it is alarming."""
        loss_f = _as_float(loss)
        norm_f = -1.0 if grad is None else _norm_float(grad)
        if scale is not None:
            self._scaled = True
        self._rows.append((loss_f, norm_f, math.nan if scale is None else scale.item()))
        self._steps.append(step)
        self._has_loss.append(loss is not None)
        return self._check(loss_f, norm_f, loss is not None)

    def drain(self) -> tuple[dict[str, torch.Tensor], TickTag | None]:
        """The ticks kept so far, as one part to send (none on CPU); empties the ring."""
        if not self._steps:
            return {}, None
        if self._host:  # nothing to send: the tag carries them
            part, tag = {}, TickTag(tuple(self._steps), tuple(self._has_loss), tuple(self._rows))
            self._rows = []
        else:
            part = {"ticks": torch.stack([*self._losses, *self._norms, *self._scales])}
            tag = TickTag(tuple(self._steps), tuple(self._has_loss))
        self._losses, self._norms, self._scales = [], [], []
        self._steps, self._has_loss = [], []
        return part, tag

    def land(self, tag: TickTag, values: np.ndarray | None, emit: Emit) -> None:
        """Read landed ticks: every step's loss and loss scale, skipped steps, late alarms.

        ``values``: the ``ticks`` part of the transfer, or None where the tag carries them.
        """
        checked = tag.rows is not None  # read by the sentinel as they were made
        rows = tag.rows if values is None else values.reshape(3, -1).T.tolist()
        assert rows is not None, "device ticks come with their transfer"
        ticks = list(zip(tag.steps, tag.has_loss, rows, strict=True))
        losses = [(step, row[0]) for step, has_loss, row in ticks if has_loss]
        if losses:
            emit("train_loss", [step for step, _ in losses], [loss for _, loss in losses])
        if checked and not self._scaled:  # CPU ticks without a scaler: nothing more to read
            return
        for step, has_loss, (loss, grad, scale) in ticks:
            if not checked and self._check(loss, grad, has_loss):
                self._alarm = True
            if not math.isnan(scale):
                self._note_scale(step, scale, emit)

    def _check(self, loss: float, grad: float, has_loss: bool) -> bool:
        alarm = has_loss and self._loss.jumped(loss)
        # -1: the sentinel parameter got no gradient this step; nothing to judge.
        return (grad != -1.0 and self._grad.jumped(grad)) or alarm

    def _note_scale(self, step: int, scale: float, emit: Emit) -> None:
        """A GradScaler lowers its scale after exactly the steps it skipped (inf/NaN found)."""
        previous, self._scale = self._scale, scale
        if previous is not None and scale < previous:
            self._skipped_run += 1
            emit("amp_skipped", [self._last_step], [self._skipped_run])
        elif previous is not None:
            self._skipped_run = 0
        if scale != previous:
            emit("amp_scale", [step], [scale])
        self._last_step = step


def _norm(grad: torch.Tensor) -> torch.Tensor:
    # A float16 norm overflows above 65504: reduce half precision in float32.
    wide = torch.float32 if grad.dtype in (torch.float16, torch.bfloat16) else None
    return torch.linalg.vector_norm(grad.detach() if grad.requires_grad else grad, dtype=wide)


def _norm_float(grad: torch.Tensor) -> float:
    """The L2 norm of a gradient as a float. A small one (the usual sentinel: a bias) is read
    as Python floats: in the loop the norm op alone cost 5-10 us, a fifth of a CPU tick."""
    if grad.layout is _STRIDED and grad.numel() <= _HOST_NORM_MAX:
        values = grad.tolist() if grad.dim() == 1 else grad.flatten().tolist()
        return math.hypot(*values)  # in float64: no overflow for half precision
    return _norm(grad).item()


def _as_float(loss: Any) -> float:
    """The loss as a float, NaN when there is none: on CPU, without building a tensor."""
    if loss is None:
        return math.nan
    if isinstance(loss, float):  # a managed run passes the float it read already
        return loss
    if isinstance(loss, torch.Tensor) and loss.numel() == 1:
        return loss.item()
    value = as_loss(loss, torch.device("cpu"))
    return math.nan if value is None else value.item()


def as_loss(loss: Any, device: torch.device) -> torch.Tensor | None:
    """The loss as a detached 0-d float tensor on the device; None when there is none.

    A float becomes a device tensor by a fill, not a host-to-device copy, so no sync.
    """
    if loss is None:
        return None
    if isinstance(loss, torch.Tensor):
        loss = loss.detach()
        if loss.dim() == 0 and loss.dtype == torch.float32:  # the usual case: one op, no copy
            return loss
        return (loss.reshape(()) if loss.numel() == 1 else loss.mean()).float()
    return torch.full((), float(loss), device=device)
