"""A Hugging Face ``transformers.Trainer`` callback that records gradient health live.

>>> from gradwidget.integrations.transformers import GradWidgetCallback   # doctest: +SKIP
>>> callback = GradWidgetCallback()
>>> Trainer(model, args, train_dataset=data, callbacks=[callback]).train()
>>> callback.history.grad_norm; callback.panel.remedied_model(["he_init"])

Gradients are read in ``on_pre_optimizer_step``, once per optimizer step. The Trainer (5.x)
calls it after ``accelerator.clip_grad_norm_``, which unscales fp16 gradients whether
``max_grad_norm`` is 0 (a norm with no clipping) or not; older versions left them scaled when
it was 0. Given the scaler, the recorder reports them unscaled either way. With
``max_grad_norm > 0`` the norms are those the optimizer applies: clipped, every layer by the
same factor, so the ratios between layers that the diagnosis reads are unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ._watch import GradientWatch, Watched, require

_transformers = require("transformers", "transformers")

__all__ = ["GradWidgetCallback"]


class GradWidgetCallback(Watched, _transformers.TrainerCallback):
    """Record per-layer gradient norms of the Trainer's model; show the panel in a notebook.

    Parameters
    ----------
    display : bool
        Show the live panel in the cell that runs ``trainer.train()`` (world process zero
        only). False for scripts: records without ipywidgets.
    **recorder_options
        :class:`gradwidget.Recorder` options: ``act_every``, ``capacity``, ``budget``.

    Attributes
    ----------
    panel : GradPanel or None
        The panel shown during training (None with ``display=False`` or off process zero);
        its fix controls work as in own-loop mode, e.g. ``panel.remedied_model(["he_init"])``.

    Notes
    -----
    The loss of each step is the one the model returns (``outputs.loss``), averaged over the
    micro-batches of a gradient accumulation as the Trainer does; a ``compute_loss`` override
    that computes its own loss leaves the loss series empty.
    """

    def __init__(self, display: bool = True, **recorder_options: Any) -> None:
        self._watch = GradientWatch(display, recorder_options)
        self._presummed = False  # the model normalised its loss over the whole step

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        show = state.is_world_process_zero
        self._watch.start(kwargs["model"], show=show, read_loss=self._read_loss)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # accelerate's AcceleratedOptimizer holds the GradScaler of fp16 training
        scaler = getattr(kwargs.get("optimizer"), "scaler", None)
        self._watch.capture(divide_by=1.0 if self._presummed else None, scaler=scaler)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._watch.finish()

    def close(self) -> None:
        """Remove every hook from the model; for a ``train()`` that raised (the Trainer calls
        no callback then). Safe to call more than once; the panel stays."""
        self._watch.finish()

    def _read_loss(self, module: nn.Module, args: Any, kwargs: dict, output: Any) -> None:
        """Keep the training loss the model computed (evaluation forwards are skipped)."""
        if not (module.training and torch.is_grad_enabled()):
            return
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        # As the Trainer: a loss given num_items_in_batch is already divided by the tokens of
        # the whole accumulated step, so the step's loss is the sum, else the mean.
        self._presummed = kwargs.get("num_items_in_batch") is not None
        self._watch.add_loss(loss)
