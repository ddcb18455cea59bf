"""One optimizer step and one test evaluation, with the first batch checked for mistakes.

:class:`~gradwidget.train.training.Run` decides *when* to step (threads, pause, stop); this module
decides *what* a step is: zero the gradients, forward, loss, backward, let the recorder read
the gradients, then let the optimizer change the weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TrainingError
from .batches import BatchSource, Inputs, check_finite
from .checks import (
    check_loss_value,
    check_targets,
    computes_own_loss,
    explain_forward_error,
    explain_loss_error,
    find_scores,
    model_loss,
    output_scores,
)

__all__ = ["StepResult", "Stepper"]

_EVAL_CHUNK = 4096  # test rows per forward pass: bounds memory on large test sets

LossFn = Callable[[Any, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class StepResult:
    """What one step measured: the loss and, for class labels, the batch accuracy."""

    loss: float
    accuracy: float | None


class Stepper:
    """Trains ``model`` one batch at a time.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place.
    optimizer : callable
        ``params -> torch.optim.Optimizer``.
    loss_fn : callable or None
        ``(output, targets) -> loss``, given the model's output as it is. ``None``: the loss
        the model computes itself when its forward takes ``labels=`` (Hugging Face models),
        else cross-entropy for integer targets, MSE for floating-point ones, on the output
        or its ``.logits``.
    clip_grad : float or None
        Clip the global gradient norm to this before each optimizer step; ``None``: no clip.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
        loss_fn: LossFn | None,
        clip_grad: float | None = None,
    ) -> None:
        self.model = model
        self.clip_grad = clip_grad
        self.params = [p for p in model.parameters() if p.requires_grad]
        if not self.params:
            raise TrainingError(
                "The model has no trainable parameters (none with requires_grad=True), so "
                "there is nothing to train. Check that its layers are registered as "
                "submodules (nn.ModuleList, not a Python list) and not frozen."
            )
        self.optimizer = optimizer(self.params)
        self.loss_fn = loss_fn
        self._default_loss = loss_fn is None
        self._model_loss = loss_fn is None and computes_own_loss(model)
        self.steps_done = 0

    def step(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        capture: Callable[..., Any],
        measure_accuracy: bool,
    ) -> StepResult:
        """Take one step on batch ``(x, y)``; returns the loss (maybe NaN) before the update.

        ``capture(loss, force=...)`` runs after ``backward()`` and before ``optimizer.step()``. On a
        non-finite loss the optimizer does not step, so the weights stay as they were and the
        gradients that blew up are still there to look at.
        """
        x, y = self.to_model(x, y)
        first = self.steps_done == 0
        if first:
            self._check_first_batch(x, y)
        self.optimizer.zero_grad(set_to_none=True)
        output = self._forward(x, y)
        loss = self._loss(output, y, first)
        loss.backward()
        value = loss.item()
        # The step that diverged is always recorded, whatever the sampling interval. The
        # float, not the tensor: the recorder's tick then reads nothing more on the host.
        capture(value, force=not math.isfinite(value))
        self.steps_done += 1
        if math.isfinite(value):
            if self.clip_grad is not None:
                # After the capture: the recorder and the diagnosis see the unclipped norms.
                torch.nn.utils.clip_grad_norm_(self.params, self.clip_grad)
            self.optimizer.step()
        accuracy = _accuracy(output, y) if measure_accuracy else None
        return StepResult(value, accuracy)

    def evaluate(self, source: BatchSource) -> float | None:
        """Accuracy on the test split in eval mode; ``None`` without test class labels."""
        if source.test is None:
            return None
        x, y = self.to_model(*source.test)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                parts = [
                    (_accuracy(self.model(xs), ys), len(ys))
                    for xs, ys in zip(x.split(_EVAL_CHUNK), y.split(_EVAL_CHUNK), strict=True)
                ]
        finally:
            self.model.train(was_training)
        if any(acc is None for acc, _ in parts):
            return None
        return sum(acc * n for acc, n in parts) / len(y)

    def to_model(self, x: Inputs, y: torch.Tensor) -> tuple[Inputs, torch.Tensor]:
        """Move a batch to the model's device; floats to its dtype, integer labels to int64."""
        ref = self.params[0]
        x = {k: self._move(v) for k, v in x.items()} if isinstance(x, Mapping) else self._move(x)
        return x, y.to(ref.device, ref.dtype if y.is_floating_point() else torch.int64)

    def _move(self, x: torch.Tensor) -> torch.Tensor:
        ref = self.params[0]
        return x.to(ref.device, ref.dtype) if x.is_floating_point() else x.to(ref.device)

    def _check_first_batch(self, x: Inputs, y: torch.Tensor) -> None:
        for column in x.values() if isinstance(x, Mapping) else (x,):
            check_finite(column, "inputs")
        check_finite(y, "targets")
        if self.loss_fn is None and not self._model_loss:
            self.loss_fn = F.mse_loss if y.is_floating_point() else F.cross_entropy

    def _forward(self, x: Inputs, y: torch.Tensor) -> Any:
        labels = {"labels": y} if self._model_loss else {}
        try:
            return self.model(**x, **labels) if isinstance(x, Mapping) else self.model(x, **labels)
        except Exception as exc:
            raise explain_forward_error(self.model, x, exc) from exc

    def _loss(self, output: Any, y: torch.Tensor, first: bool) -> torch.Tensor:
        if self._model_loss:
            return model_loss(output)
        assert self.loss_fn is not None  # chosen on the first batch
        if self._default_loss:  # a loss the user chose reads the output as it is
            output = output_scores(output)
            if first:
                check_targets(output, y, self._default_loss)
        try:
            loss = self.loss_fn(output, y)
        except Exception as exc:
            raise explain_loss_error(output, y, exc) from exc
        return check_loss_value(loss)


def _accuracy(output: Any, y: torch.Tensor) -> float | None:
    """Share of rows whose top score is the label; ``None`` unless class labels and scores."""
    scores = find_scores(output)
    if scores is None or y.is_floating_point() or y.dim() != 1 or scores.dim() != 2:
        return None
    return (scores.detach().argmax(dim=1) == y).float().mean().item()
