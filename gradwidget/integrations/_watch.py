"""What the Lightning and Hugging Face callbacks share: the recorder on the trained model.

A trainer calls a callback at its own points; this object turns those calls into what
``panel.capture(loss, scaler=...)`` does in an own loop: sum the loss of the micro-batches of
one optimizer step, then capture once per optimizer step (the recorder keeps every step's loss
and reads the gradients unscaled), and redraw.
The callback owns the recorder, inside a watching :class:`~gradwidget.session.Session`; in a
notebook a panel on that session is shown in the cell that runs ``fit``/``train``, and its
refresher thread redraws while that cell blocks.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..errors import GradWidgetError
from ..history import History
from ..record.recorder import Recorder
from ..session import Session

__all__ = ["GradientWatch", "Watched", "require"]


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


class Watched:
    """What both callbacks show the user afterwards: ``panel`` and ``history``."""

    _watch: GradientWatch

    @property
    def panel(self) -> Any:
        """The panel shown while the trainer trains, or None."""
        return self._watch.panel

    @property
    def history(self) -> History:
        """The recorded :class:`gradwidget.History` (a snapshot)."""
        return self._watch.history


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
        self.session: Session | None = None
        self._loss_hook: Any = None
        self._loss_sum: torch.Tensor | None = None
        self._micro_batches = 0

    @property
    def recorder(self) -> Recorder | None:
        """The recorder on the trained model (None before the first fit)."""
        return None if self.session is None else self.session.recorder

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
        self.session = Session.watching(Recorder(model, **self.options))
        if self.display and show:
            from IPython.display import display

            from ..view import GradPanel  # lazily: scripts with display=False need no UI

            self.panel = GradPanel(self.session)
            display(self.panel)
        if read_loss is not None:
            self._loss_hook = model.register_forward_hook(read_loss, with_kwargs=True)

    def add_loss(self, loss: Any) -> None:
        """Add one micro-batch's loss (a tensor, kept on its device until the step ends)."""
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            return
        if self._loss_sum is None:  # the usual step of one micro-batch: kept as it is, no op
            self._loss_sum = loss
        else:
            self._loss_sum = self._loss_sum.detach().reshape(()) + loss.detach().reshape(())
        self._micro_batches += 1

    def capture(self, *, divide_by: float | None = None, scaler: Any = None) -> None:
        """Record one optimizer step: gradients as they are now, and the step's loss.

        ``divide_by``: what the summed micro-batch losses are divided by (the loss scale, the
        number of micro-batches); None: their mean. ``scaler``: the trainer's GradScaler, so
        that norms are recorded unscaled and the steps it skips are told apart.
        """
        loss = self._step_loss(divide_by)
        if self.session is not None and not self.session.recorder.closed:
            self.session.capture(loss, scaler=scaler)  # and wakes the panel's refresher

    def finish(self) -> None:
        """Remove the hooks (the panel stays, showing the whole run). Safe to call again."""
        if self._loss_hook is not None:
            self._loss_hook.remove()
            self._loss_hook = None
        if self.session is None or self.session.recorder.closed:
            return
        self.session.recorder.close()
        if self.panel is not None:
            self.panel.wait()  # the last steps, drawn now rather than by a thread that quit

    def _step_loss(self, divide_by: float | None) -> torch.Tensor | None:
        total, count = self._loss_sum, self._micro_batches
        self._loss_sum, self._micro_batches = None, 0
        if total is None:
            return None
        divisor = count if divide_by is None else divide_by
        # Most steps have one micro-batch and no loss scale: no op (on a 1 ms step each torch
        # op in the loop costs about 1 % of it). The recorder reads the loss without its graph.
        return total if divisor == 1 else total.detach() / divisor
