"""Turn the usual first-batch mistakes into sentences that name the problem and the fix.

A raw ``mat1 and mat2 shapes cannot be multiplied (64x32 and 64x64)`` from deep inside the
forward pass tells a beginner little; these helpers look at the batch, the first layer and the
loss, and say which of them is wrong and what to change.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ..errors import DataError, GradWidgetError, TrainingError

__all__ = [
    "check_loss_value",
    "check_targets",
    "computes_own_loss",
    "explain_forward_error",
    "explain_loss_error",
    "find_scores",
    "model_loss",
    "output_scores",
]

# The one thing the panel needs from a model's output, said once for every place it is missing.
_NEEDS = (
    "the panel needs the forward pass to return a tensor of scores, or an output with .logits "
    "(a Hugging Face model's), or, for a model whose forward takes labels=, an output with "
    ".loss; wrap the model so that it does, or pass loss_fn=(output, targets) -> loss."
)

_FLOAT_LABELS = (
    "The targets look like class labels stored as floating-point numbers (shape {y}), but the "
    "model outputs {out} class scores. Cross-entropy needs integer labels: convert them with "
    "y.long(). For regression with MSE instead, give targets shaped like the outputs."
)


def computes_own_loss(model: nn.Module) -> bool:
    """Whether ``model.forward`` takes ``labels=`` and so returns its own loss (Hugging Face)."""
    try:
        return "labels" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):  # a builtin or C forward without a signature
        return False


def find_scores(output: Any) -> torch.Tensor | None:
    """The scores in a model's output: the tensor itself, or its ``logits``; None if neither."""
    if isinstance(output, torch.Tensor):
        return output
    logits = (
        output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    )
    return logits if isinstance(logits, torch.Tensor) else None


def output_scores(output: Any) -> torch.Tensor:
    """The scores in a model's output, or a TrainingError that says what the panel needs."""
    scores = find_scores(output)
    if scores is None:
        raise TrainingError(f"The model returned a {type(output).__name__}, but {_NEEDS}")
    return scores


def model_loss(output: Any) -> torch.Tensor:
    """The loss a model computed from the ``labels=`` it was given."""
    loss = _field(output, "loss")
    if loss is None:
        raise TrainingError(
            f"The model takes labels= but returned a {type(output).__name__} without a loss; "
            + _NEEDS
        )
    return check_loss_value(loss)


def explain_forward_error(model: nn.Module, x: Any, exc: Exception) -> GradWidgetError:
    """A DataError when ``x`` does not fit the first layer, else a TrainingError."""
    if isinstance(x, Mapping):
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in x.items())
        return TrainingError(
            f"The model's forward pass raised {type(exc).__name__} on a batch of {shapes}: {exc}"
        )
    name, first = _first_layer(model)
    shape = tuple(x.shape)
    if isinstance(first, nn.Linear) and (x.dim() < 1 or x.shape[-1] != first.in_features):
        return DataError(
            f"The batch has inputs of shape {shape}, but the model's first layer "
            f"('{name}', Linear) expects {first.in_features} input features "
            f"(in_features={first.in_features}). Reshape the inputs to "
            f"(batch, {first.in_features}) or change the first layer."
        )
    if isinstance(first, nn.modules.conv._ConvNd) and not _fits_conv(first, x):
        spatial = ", ".join("HWD"[i] for i in range(len(first.kernel_size)))
        return DataError(
            f"The batch has inputs of shape {shape}, but the model's first layer "
            f"('{name}', {type(first).__name__}) expects (batch, {first.in_channels}, "
            f"{spatial}) with in_channels={first.in_channels}. Reshape the inputs, e.g. "
            f"x.reshape(len(x), {first.in_channels}, ...)."
        )
    return TrainingError(
        f"The model's forward pass raised {type(exc).__name__} on a batch of shape {shape}: {exc}"
    )


def check_targets(output: torch.Tensor, y: torch.Tensor, default_loss: bool) -> None:
    """Catch targets that the default loss would misread instead of rejecting.

    MSE silently broadcasts ``(N,)`` targets against ``(N, C)`` outputs, so float class labels
    would train on nonsense without an error; catch that before the first step.
    """
    if not (default_loss and y.is_floating_point()):
        return
    if _float_labels(output, y):
        raise DataError(_FLOAT_LABELS.format(y=tuple(y.shape), out=tuple(output.shape)))
    if y.shape != output.shape:
        raise DataError(
            f"The targets have shape {tuple(y.shape)} but the model outputs "
            f"{tuple(output.shape)}. Floating-point targets are fitted with MSE, which needs "
            f"both shapes equal: reshape the targets (e.g. y.reshape({tuple(output.shape)}))."
        )


def explain_loss_error(output: Any, y: torch.Tensor, exc: Exception) -> GradWidgetError:
    """A DataError for float class labels, else a TrainingError quoting the loss's error."""
    scores = find_scores(output)
    if scores is not None and _float_labels(scores, y):
        return DataError(_FLOAT_LABELS.format(y=tuple(y.shape), out=tuple(scores.shape)))
    what = f"of shape {tuple(scores.shape)}" if scores is not None else f"{type(output).__name__}"
    return TrainingError(
        f"The loss function raised {type(exc).__name__} on outputs {what} "
        f"and targets of shape {tuple(y.shape)} ({y.dtype}): {exc}. "
        "Check that the loss matches the task and the targets' shape and dtype."
    )


def check_loss_value(loss: object) -> torch.Tensor:
    """The loss if it is a one-element tensor that autograd can differentiate."""
    if not isinstance(loss, torch.Tensor):
        raise TrainingError(
            f"The loss function returned a {type(loss).__name__}, not a tensor: return the "
            "torch tensor itself (no .item() or float()) so backward() can run."
        )
    if loss.numel() != 1:
        raise TrainingError(
            f"The loss function returned a tensor of shape {tuple(loss.shape)}, but training "
            "needs a single number: use reduction='mean' (the default) or call .mean() on it."
        )
    if not loss.requires_grad:
        raise TrainingError(
            "The loss does not depend on any trainable parameter (requires_grad is False): "
            "do not detach the output or compute the loss under torch.no_grad()."
        )
    return loss


def _field(output: Any, name: str) -> Any:
    """``output.name`` or ``output[name]``: Hugging Face outputs are both, plain dicts one."""
    return output.get(name) if isinstance(output, Mapping) else getattr(output, name, None)


def _float_labels(output: torch.Tensor, y: torch.Tensor) -> bool:
    """Float ``(N,)`` targets against ``(N, C)`` scores: integer labels in the wrong dtype."""
    return (
        y.is_floating_point()
        and y.dim() == 1
        and output.dim() == 2
        and output.shape[1] > 1
        and len(y) == len(output)
    )


def _fits_conv(conv: nn.modules.conv._ConvNd, x: torch.Tensor) -> bool:
    dims = len(conv.kernel_size)  # Conv2d: (N, C, H, W), or (C, H, W) unbatched
    return x.dim() in (dims + 1, dims + 2) and x.shape[-dims - 1] == conv.in_channels


def _first_layer(model: nn.Module) -> tuple[str, nn.Module | None]:
    """The first module (in definition order) that owns parameters itself."""
    for name, module in model.named_modules():
        if next(module.parameters(recurse=False), None) is not None:
            return name or type(model).__name__, module
    return "", None
