"""Turn the usual first-batch mistakes into sentences that name the problem and the fix.

A raw ``mat1 and mat2 shapes cannot be multiplied (64x32 and 64x64)`` from deep inside the
forward pass tells a beginner little; these helpers look at the batch, the first layer and the
loss, and say which of them is wrong and what to change.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import DataError, GradWidgetError, TrainingError

__all__ = ["check_loss_value", "check_targets", "explain_forward_error", "explain_loss_error"]

_FLOAT_LABELS = (
    "The targets look like class labels stored as floating-point numbers (shape {y}), but the "
    "model outputs {out} class scores. Cross-entropy needs integer labels: convert them with "
    "y.long(). For regression with MSE instead, give targets shaped like the outputs."
)


def explain_forward_error(model: nn.Module, x: torch.Tensor, exc: Exception) -> GradWidgetError:
    """A DataError when ``x`` does not fit the first layer, else a TrainingError."""
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


def explain_loss_error(output: torch.Tensor, y: torch.Tensor, exc: Exception) -> GradWidgetError:
    """A DataError for float class labels, else a TrainingError quoting the loss's error."""
    if _float_labels(output, y):
        return DataError(_FLOAT_LABELS.format(y=tuple(y.shape), out=tuple(output.shape)))
    return TrainingError(
        f"The loss function raised {type(exc).__name__} on outputs of shape "
        f"{tuple(output.shape)} and targets of shape {tuple(y.shape)} ({y.dtype}): {exc}. "
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
