"""Training remedies: they change a run's settings (``TrainConfig``), not its model."""

from __future__ import annotations

import dataclasses

from ..errors import RemedyNotApplicable
from ..train.settings import ScaledLR, TrainConfig
from ._plan import Change, Plan

CLIP_NORM = 1.0  # the usual default (e.g. Hugging Face Trainer's max_grad_norm)
LR_FACTOR = 0.1


def plan_clip_grad(config: TrainConfig) -> Plan:
    """Plan clipping the global gradient norm at ``CLIP_NORM``."""
    if config.clip_grad is not None:
        raise RemedyNotApplicable(
            f"This run already clips the global gradient norm at {config.clip_grad:g}; to clip "
            "harder, lower TrainConfig(clip_grad=...) yourself."
        )
    summary = (
        f"clip the global gradient norm at {CLIP_NORM:g} before each step: one oversized "
        "gradient can no longer throw the weights far"
    )
    code = (
        "# after loss.backward(), before optimizer.step():\n"
        f"torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm={CLIP_NORM!r})\n"
    )
    return Plan(
        Change("clip_grad", summary, code),
        lambda: dataclasses.replace(config, clip_grad=CLIP_NORM),
    )


def plan_lower_lr(config: TrainConfig) -> Plan:
    """Plan a learning rate ten times smaller (of a named optimizer, or of a factory's)."""
    if callable(config.optimizer):
        summary = "your optimizer's learning rates / 10"
        code = (
            "optimizer = make_optimizer(model.parameters())\n"
            "for group in optimizer.param_groups:\n"
            f"    group['lr'] *= {LR_FACTOR!r}\n"
        )
        settings = dataclasses.replace(config, optimizer=ScaledLR(config.optimizer, LR_FACTOR))
    else:
        lower = config.lr * LR_FACTOR
        summary = f"learning rate {config.lr:g} -> {lower:g}"
        code = f"# make the optimizer with lr={lower!r} instead of lr={config.lr!r}\n"
        settings = dataclasses.replace(config, lr=lower)
    return Plan(
        Change("lower_lr", summary + ": smaller steps cannot overshoot", code), lambda: settings
    )
