"""A PyTorch Lightning callback that records gradient health and shows the panel live.

>>> from gradwidget.integrations.lightning import GradWidgetCallback   # doctest: +SKIP
>>> callback = GradWidgetCallback()
>>> trainer = L.Trainer(max_steps=600, callbacks=[callback])
>>> trainer.fit(module, loader)            # the panel shows and updates in this cell
>>> callback.history.grad_norm; callback.panel.remedied_model(["relu", "he_init"])

Gradients are read in ``on_before_optimizer_step``: Lightning calls it once per optimizer step
(after the last micro-batch of a gradient accumulation), after unscaling AMP gradients and
before clipping them, so the norms are the true, unclipped gradients of the whole step.
"""

from __future__ import annotations

from typing import Any

from ._watch import GradientWatch, Watched, require

# Lightning 2.x ships as `lightning`; the standalone package as `pytorch_lightning`. Either
# trainer calls a callback of the other's base class: it looks hooks up by name.
_pl = require("lightning", "lightning.pytorch", "pytorch_lightning")

__all__ = ["GradWidgetCallback"]


class GradWidgetCallback(Watched, _pl.Callback):
    """Record per-layer gradient norms of the LightningModule; show the panel in a notebook.

    Parameters
    ----------
    display : bool
        Show the live panel in the cell that runs ``trainer.fit`` (global rank 0 only). False
        for scripts: records without ipywidgets.
    **recorder_options
        :class:`gradwidget.Recorder` options: ``act_every``, ``capacity``, ``budget``.

    Attributes
    ----------
    panel : GradPanel or None
        The panel shown during ``fit`` (None with ``display=False`` or off rank 0); its fix
        controls work as in own-loop mode, e.g. ``panel.remedied_model(["relu"])``.
    """

    def __init__(self, display: bool = True, **recorder_options: Any) -> None:
        super().__init__()
        self._watch = GradientWatch(display, recorder_options)
        self._scaler: Any = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        # The precision plugin's scaler, looked up once: on every step the lookup through the
        # trainer's properties cost a few percent of this callback's own time.
        self._scaler = getattr(trainer.precision_plugin, "scaler", None)
        self._watch.start(pl_module, show=trainer.is_global_zero)

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None:
        # Already divided by accumulate_grad_batches, so the step's loss is the sum.
        self._watch.add_loss(loss)

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        # Under 16-bit AMP the loss reached on_before_backward scaled; the scale is unchanged
        # until the scaler's update() after this step.
        scaler = self._scaler
        scale = scaler.get_scale() if scaler is not None and scaler.is_enabled() else 1.0
        self._watch.capture(divide_by=scale, scaler=scaler)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self._watch.finish()

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._watch.finish()

    def close(self) -> None:
        """Remove every hook from the model (done at the end of ``fit``, also when it raises).
        Safe to call more than once; the panel stays."""
        self._watch.finish()
