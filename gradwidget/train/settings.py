"""Settings and states of a training run: :class:`TrainConfig` and :class:`RunState`.

Kept apart from the loop so the view can build configs and read states without the
training machinery; both are re-exported by :mod:`gradwidget.train.training`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

import torch
from torch import nn

__all__ = ["OPTIMIZERS", "RunState", "ScaledLR", "TrainConfig"]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
}
OptimizerFactory = Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ScaledLR:
    """An optimizer factory whose learning rates are ``factor`` times those of ``factory``."""

    factory: OptimizerFactory
    factor: float

    def __call__(self, params: Any) -> torch.optim.Optimizer:
        optimizer = self.factory(params)
        for group in optimizer.param_groups:
            group["lr"] = group["lr"] * self.factor
        return optimizer


@dataclass(frozen=True)
class TrainConfig:
    """Settings of one training run.

    Attributes
    ----------
    steps : int
        Optimizer steps to take (ignored when ``epochs`` is set).
    epochs : int or None
        Passes over the data instead of a step count.
    batch_size : int
        Rows per batch when the data are tensors (an iterable brings its own batches).
    optimizer : {"sgd", "adam", "adamw", "rmsprop"} or callable
        An optimizer name (built with ``lr``), or ``params -> torch.optim.Optimizer``.
    lr : float
        Learning rate for a named optimizer.
    seed : int
        Seed of the data order (a ``torch.Generator`` of the run's own; the global RNG and
        so the model's initial weights are left alone).
    loss_fn : callable or None
        ``loss_fn(output, target) -> scalar tensor``; ``None`` picks cross-entropy for
        integer class labels and MSE for floating-point targets.
    act_every : int
        Interval of activation statistics and of the train-batch ``accuracy`` series.
    eval_every : int
        Interval of the ``test_accuracy`` series (also measured at the end).
    clip_grad : float or None
        Clip the global L2 norm of all gradients to this value before each optimizer step
        (``torch.nn.utils.clip_grad_norm_``); ``None`` does not clip. The recorder still sees
        the gradients as backward left them, so the diagnosis judges the real ones.
    """

    steps: int = 600
    epochs: int | None = None
    batch_size: int = 64
    optimizer: str | OptimizerFactory = "sgd"
    lr: float = 0.1
    seed: int = 0
    loss_fn: LossFn | None = None
    act_every: int = 10
    eval_every: int = 50
    clip_grad: float | None = None

    def __post_init__(self) -> None:
        for field in ("steps", "batch_size", "act_every", "eval_every"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be at least 1, got {getattr(self, field)}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be at least 1 or None, got {self.epochs}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr}")
        if self.clip_grad is not None and not self.clip_grad > 0:
            raise ValueError(f"clip_grad must be positive or None, got {self.clip_grad}")
        if not callable(self.optimizer) and self.optimizer not in OPTIMIZERS:
            raise ValueError(
                f"unknown optimizer {self.optimizer!r}; use one of {', '.join(OPTIMIZERS)} "
                "or a callable params -> torch.optim.Optimizer"
            )


class RunState(Enum):
    """Where a :class:`Run` is in its life."""

    IDLE = "idle"
    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FINISHED = "finished"
    DIVERGED = "diverged"
    FAILED = "failed"

    @property
    def active(self) -> bool:
        """Started and not ended yet (running or paused)."""
        return self in (RunState.RUNNING, RunState.PAUSED)

    @property
    def ended(self) -> bool:
        """Stopped, finished, diverged or failed: the run will not take another step."""
        return self in (RunState.STOPPED, RunState.FINISHED, RunState.DIVERGED, RunState.FAILED)
