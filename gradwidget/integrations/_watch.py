"""What the Lightning and Hugging Face callbacks share: the recorder on the trained model.

A trainer calls a callback at its own points; this object turns those calls into what
``panel.capture(loss)`` does in an own loop: sum the loss of the micro-batches of one optimizer
step, read the gradients once per optimizer step, write the loss of every step, and redraw.
In a notebook the recorder is the one of an own-loop :class:`~gradwidget.GradPanel` shown in
the cell that runs ``fit``/``train``; its refresher thread redraws while that cell blocks.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import GradWidgetError
from ..history import History
from ..recorder import Recorder

__all__ = ["GradientWatch", "overflowed", "require", "unscale_gradients"]


def require(extra: str, *modules: str) -> Any:
    """The first of ``modules`` that imports, or a GradWidgetError naming the extra to install."""
    for module in modules:
        try:
            return importlib.import_module(module)
        except ImportError:
            continue
    raise GradWidgetError(
        f"This integration needs the '{extra}' package, which is not installed: "
        f"pip install 'gradwidget[{extra}]'."
    )


def unscale_gradients(scaler: Any, optimizer: torch.optim.Optimizer) -> None:
    """Unscale fp16 gradients in place, unless the trainer already did for this step.

    ``GradScaler.unscale_`` is the documented way to read true gradients before
    ``scaler.step``, which then skips its own unscaling; calling it twice in a step raises,
    hence the check of the optimizer's stage.
    """
    if scaler is None or not scaler.is_enabled():
        return
    from torch.amp.grad_scaler import OptState  # private to torch, stable since 1.x

    state = scaler._per_optimizer_states.get(id(optimizer), {})
    if state.get("stage", OptState.READY) is OptState.READY:
        scaler.unscale_(optimizer)


def overflowed(scaler: Any, optimizer: torch.optim.Optimizer) -> bool:
    """Whether the GradScaler found Inf/NaN in this step's unscaled gradients.

    It then skips the optimizer step and lowers its scale: a routine event of fp16 training,
    not a divergence, so such a step is left out of the record rather than diagnosed.
    """
    if scaler is None or not scaler.is_enabled():
        return False
    state = scaler._per_optimizer_states.get(id(optimizer), {})
    return any(bool(found.item()) for found in state.get("found_inf_per_device", {}).values())


class GradientWatch:
    """A recorder (or an own-loop panel) on the model a trainer trains.

    Parameters
    ----------
    display : bool
        Show a panel (rank 0 only); False records without any UI.
    options : dict
        :class:`gradwidget.Recorder` options (``act_every``, ``capacity``, ``budget``).
    """

    def __init__(self, display: bool, options: dict[str, Any]) -> None:
        self.display = display
        self.options = dict(options)
        self.panel: Any = None
        self.recorder: Recorder | None = None
        self._loss_hook: Any = None
        self._loss_sum: torch.Tensor | None = None
        self._micro_batches = 0

    @property
    def history(self) -> History:
        """Everything recorded so far (a snapshot)."""
        if self.recorder is None:
            raise GradWidgetError(
                "Nothing is recorded yet: pass the callback to the trainer and train first."
            )
        return self.recorder.history

    def start(self, model: nn.Module, show: bool, read_loss: Callable | None = None) -> None:
        """Hook ``model``; show the panel in the running cell when ``show`` (global rank 0).

        ``read_loss(module, args, kwargs, output)``: a forward hook on ``model`` that passes
        the loss to :meth:`add_loss`, for trainers whose callbacks never see the loss.
        """
        self.finish()
        self._loss_sum, self._micro_batches = None, 0
        if self.display and show:
            from IPython.display import display

            from ..view import GradPanel  # lazily: scripts with display=False need no UI

            options = dict(self.options)
            act_every = options.pop("act_every", 10)
            self.panel = GradPanel(model, act_every=act_every, recorder_options=options)
            self.recorder = self.panel.recorder
            display(self.panel)
        else:
            self.recorder = Recorder(model, **self.options)
        if read_loss is not None:
            self._loss_hook = model.register_forward_hook(read_loss, with_kwargs=True)

    def add_loss(self, loss: Any) -> None:
        """Add one micro-batch's loss (a tensor, kept on its device until the step ends)."""
        if isinstance(loss, torch.Tensor) and loss.numel() == 1:
            value = loss.detach().reshape(())
            self._loss_sum = value if self._loss_sum is None else self._loss_sum + value
            self._micro_batches += 1

    def capture(self, *, divide_by: float | None = None, skipped: bool = False) -> None:
        """Record one optimizer step: gradients as they are now, and the step's loss.

        ``divide_by``: what the summed micro-batch losses are divided by (the loss scale, the
        number of micro-batches); None: their mean. ``skipped``: the optimizer will not step
        (an fp16 overflow): forget its loss, record nothing.
        """
        loss = self._step_loss(divide_by)
        if skipped or self.recorder is None or self.recorder.closed:
            return
        step = self.recorder.step
        value = None if loss is None else float(loss)
        if self.panel is not None:
            self.panel.capture(loss)  # and wakes the panel's refresher
        else:  # the step whose loss diverged is recorded whatever the sampling interval
            self.recorder.capture(loss, force=value is not None and not math.isfinite(value))
        if value is not None:
            # Every step's loss: the gradient series may be thinned by the time budget.
            self.recorder.live.append("train_loss", step, value)

    def finish(self) -> None:
        """Remove the hooks (the panel stays, showing the whole run). Safe to call again."""
        if self._loss_hook is not None:
            self._loss_hook.remove()
            self._loss_hook = None
        if self.recorder is None or self.recorder.closed:
            return
        self.recorder.close()
        if self.panel is not None:
            self.panel.wait()  # the last steps, drawn now rather than by a thread that quit

    def _step_loss(self, divide_by: float | None) -> torch.Tensor | None:
        total, count = self._loss_sum, self._micro_batches
        self._loss_sum, self._micro_batches = None, 0
        if total is None:
            return None
        return total / (count if divide_by is None else divide_by)
