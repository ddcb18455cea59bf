"""Training remedies: they change a run's settings (``TrainConfig``), not its model."""

from __future__ import annotations

import dataclasses

from ..errors import RemedyNotApplicable
from ..train.settings import ScaledLR, TrainConfig
from ._plan import Change, Plan

CLIP_NORM = 1.0  # the usual default (e.g. Hugging Face Trainer's max_grad_norm)
LR_FACTOR = 0.1
RAISE_FACTOR = 10.0
ADAM_LR = 1e-3  # Adam's published default (Kingma & Ba, 2015) and torch's


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


def _scale_lr(config: TrainConfig, factor: float) -> tuple[str, str, TrainConfig]:
    """Summary, code and settings of a learning rate ``factor`` times the run's (of a named
    optimizer, or of an optimizer factory's)."""
    if callable(config.optimizer):
        code = (
            "optimizer = make_optimizer(model.parameters())\n"
            "for group in optimizer.param_groups:\n"
            f"    group['lr'] *= {factor!r}\n"
        )
        summary = f"your optimizer's learning rates x{factor:g}"
        return (
            summary,
            code,
            dataclasses.replace(config, optimizer=ScaledLR(config.optimizer, factor)),
        )
    new = config.lr * factor
    code = f"# make the optimizer with lr={new!r} instead of lr={config.lr!r}\n"
    return f"learning rate {config.lr:g} -> {new:g}", code, dataclasses.replace(config, lr=new)


def plan_lower_lr(config: TrainConfig) -> Plan:
    """Plan a learning rate ten times smaller (of a named optimizer, or of a factory's)."""
    summary, code, settings = _scale_lr(config, LR_FACTOR)
    return Plan(
        Change("lower_lr", summary + ": smaller steps cannot overshoot", code), lambda: settings
    )


def plan_raise_lr(config: TrainConfig) -> Plan:
    """Plan a learning rate ten times larger: for a loss that falls too slowly or not at all."""
    summary, code, settings = _scale_lr(config, RAISE_FACTOR)
    change = Change("raise_lr", summary + ": larger steps cover more ground per step", code)
    return Plan(change, lambda: settings)


def plan_adam(config: TrainConfig) -> Plan:
    """Plan Adam at ``ADAM_LR`` in place of the run's optimizer."""
    if config.optimizer in ("adam", "adamw"):
        raise RemedyNotApplicable(
            f"This run already trains with {config.optimizer!r}; to change its step size, use "
            "lower_lr or raise_lr."
        )
    summary = (
        f"Adam at learning rate {ADAM_LR:g} instead of "
        f"{'your optimizer' if callable(config.optimizer) else config.optimizer}: a step size "
        "per weight, scaled to that weight's recent gradients, so too large and too small "
        "steps both even out"
    )
    code = f"optimizer = torch.optim.Adam(model.parameters(), lr={ADAM_LR!r})\n"
    settings = dataclasses.replace(config, optimizer="adam", lr=ADAM_LR)
    return Plan(Change("adam", summary, code), lambda: settings)
