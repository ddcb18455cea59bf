"""The one list of remedies: each a frozen record; names, labels, order and the fix bar read it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from torch import nn

from ..train.settings import TrainConfig
from ._activation import plan_activation
from ._init import plan_init
from ._norm import plan_norm
from ._plan import Plan
from ._residual import plan_residual
from ._training import plan_adam, plan_clip_grad, plan_lower_lr, plan_raise_lr


class Group(Enum):
    """What a remedy changes; the fix bar shows one group per box, in this order."""

    ACTIVATION = "activation"
    INITIALISATION = "initialisation"
    NORMALISATION = "normalisation"
    ARCHITECTURE = "architecture"
    TRAINING = "training"

    @property
    def exclusive(self) -> bool:
        """At most one remedy of the group at a time (one activation, one init, one norm)."""
        return self in (Group.ACTIVATION, Group.INITIALISATION, Group.NORMALISATION)


class Target(Enum):
    """Whether a remedy builds a new model or new training settings."""

    MODEL = "model"
    SETTINGS = "settings"


# plan(model, settings): model remedies get a hook-free copy to change; settings remedies read
# (and never change) the settings. Either may raise RemedyNotApplicable with a sentence.
Planner = Callable[[nn.Module, TrainConfig], Plan]


@dataclass(frozen=True)
class Remedy:
    """One remedy.

    Attributes
    ----------
    name : str
        What ``apply_remedies`` and ``panel.retrain`` take, e.g. ``"residual"``.
    label : str
        What buttons, run names and the diagnosis show, e.g. ``"Residual"``.
    group : Group
        What it changes (activation, initialisation, normalisation, architecture, training).
    order : int
        Remedies apply in increasing order: activations first, then skip connections, norms,
        and the initialisation last, so it sees the final set of layers.
    target : Target
        ``MODEL`` (a new model) or ``SETTINGS`` (a new ``TrainConfig``).
    plan : callable
        ``plan(model, settings) -> Plan``; raises ``RemedyNotApplicable`` with the reason.
    instead : str or None
        The remedy to suggest in its place when this one cannot apply to a model.
    """

    name: str
    label: str
    group: Group
    order: int
    target: Target
    plan: Planner
    instead: str | None = None


def _activation(to: str) -> Planner:
    return lambda model, _: plan_activation(model, to)


def _init(name: str) -> Planner:
    return lambda model, settings: plan_init(model, name, settings.seed)


def _norm(name: str) -> Planner:
    return lambda model, settings: plan_norm(model, name, settings.batch_size)


_MODEL, _SETTINGS, _NORMS = Target.MODEL, Target.SETTINGS, Group.NORMALISATION
REGISTRY: tuple[Remedy, ...] = (
    Remedy("relu", "ReLU", Group.ACTIVATION, 10, _MODEL, _activation("relu")),
    Remedy("leaky_relu", "Leaky ReLU", Group.ACTIVATION, 11, _MODEL, _activation("leaky_relu")),
    Remedy("gelu", "GELU", Group.ACTIVATION, 12, _MODEL, _activation("gelu")),
    Remedy("he_init", "He init", Group.INITIALISATION, 40, _MODEL, _init("he_init")),
    Remedy("xavier_init", "Xavier init", Group.INITIALISATION, 41, _MODEL, _init("xavier_init")),
    Remedy("batchnorm", "BatchNorm", _NORMS, 30, _MODEL, _norm("batchnorm"), "layernorm"),
    Remedy("layernorm", "LayerNorm", _NORMS, 31, _MODEL, _norm("layernorm")),
    Remedy("residual", "Residual", Group.ARCHITECTURE, 20, _MODEL, lambda m, _: plan_residual(m)),
    Remedy("clip_grad", "Clip grad", Group.TRAINING, 50, _SETTINGS, lambda _, s: plan_clip_grad(s)),
    Remedy("lower_lr", "Lower LR", Group.TRAINING, 51, _SETTINGS, lambda _, s: plan_lower_lr(s)),
    Remedy("raise_lr", "Raise LR", Group.TRAINING, 52, _SETTINGS, lambda _, s: plan_raise_lr(s)),
    # First of its group: Adam sets its own rate, which lower_lr / raise_lr then scale.
    Remedy("adam", "Adam", Group.TRAINING, 49, _SETTINGS, lambda _, s: plan_adam(s)),
)  # fmt: skip
REMEDIES: dict[str, Remedy] = {remedy.name: remedy for remedy in REGISTRY}
