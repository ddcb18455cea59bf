"""Checking and applying remedies by name: models through their copies, settings anew."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable

from torch import nn

from ..errors import RemedyNotApplicable
from ..train.settings import TrainConfig
from ._plan import Change
from ._registry import REMEDIES, Group, Remedy, Target
from ._tree import copy_without_hooks


def check(model: nn.Module, name: str, settings: TrainConfig | None = None) -> Change:
    """Describe what remedy ``name`` would change, without touching ``model`` or ``settings``.

    Parameters
    ----------
    model : torch.nn.Module
        The model.
    name : str
        A registered remedy (``REMEDY_NAMES`` or ``SETTINGS_NAMES``).
    settings : TrainConfig or None
        The training settings (default ``TrainConfig()``): training remedies change them,
        BatchNorm is refused at batch size 1, the seed seeds re-initialisations.

    Returns
    -------
    Change
        Summary and equivalent plain-PyTorch code.

    Raises
    ------
    RemedyNotApplicable
        Exactly when applying the remedy would raise it.
    ValueError
        ``name`` is not a remedy.
    """
    outcome = check_all(model, [name], settings)[name]
    if isinstance(outcome, RemedyNotApplicable):
        raise outcome
    return outcome


def check_all(
    model: nn.Module, names: Iterable[str], settings: TrainConfig | None = None
) -> dict[str, Change | RemedyNotApplicable]:
    """:func:`check` of each of ``names``, with one copy of ``model`` for all of them.

    Planning a remedy only reads the model (applying it is what changes the copy), so one
    copy serves every plan: the fix bar's eight model checks used to copy a small GPT-2 eight
    times, 25-50 ms while a Trainer had started training.

    Returns
    -------
    dict
        By name, the :class:`Change`, or the :class:`RemedyNotApplicable` that says why not.
    """
    copied: nn.Module | None = None
    outcomes: dict[str, Change | RemedyNotApplicable] = {}
    for name in names:
        remedy = _known(name)
        if remedy.target is Target.MODEL and copied is None:
            copied = copy_without_hooks(model)
        target = copied if remedy.target is Target.MODEL else model
        try:
            outcomes[name] = remedy.plan(target, settings or TrainConfig()).change
        except RemedyNotApplicable as why:
            outcomes[name] = why
    return outcomes


def split(names: Iterable[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Model remedies and training remedies of ``names``, each in the order they apply.

    Raises
    ------
    ValueError
        An unknown name, or two remedies of one exclusive group (two activations, two inits,
        two norms).
    """
    chosen = sorted({_known(n) for n in ([names] if isinstance(names, str) else names)},
                    key=lambda r: r.order)  # fmt: skip
    for group in Group:
        rivals = [r.name for r in chosen if r.group is group]
        if group.exclusive and len(rivals) > 1:
            raise ValueError(
                f"{' and '.join(rivals)} both change the {group.value}: choose one of them."
            )
    model = tuple(r.name for r in chosen if r.target is Target.MODEL)
    return model, tuple(r.name for r in chosen if r.target is Target.SETTINGS)


def apply_remedies(
    model: nn.Module, names: Iterable[str], seed: int = 0, settings: TrainConfig | None = None
) -> nn.Module:
    """Apply model remedies in their registered order, on a copy.

    Parameters
    ----------
    model : torch.nn.Module
        The model; it is not changed.
    names : iterable of str
        Remedies from ``REMEDY_NAMES``, in any order; duplicates are ignored. Empty gives an
        unchanged copy.
    seed : int
        Seed of re-initialisations (``he_init``, ``xavier_init``).
    settings : TrainConfig or None
        The settings the model will train with (its batch size decides whether BatchNorm
        fits); ``seed`` replaces their seed.

    Returns
    -------
    torch.nn.Module
        The remedied copy.

    Raises
    ------
    ValueError
        An unknown name, a training remedy (use :func:`apply_settings`), or two rivals.
    RemedyNotApplicable
        One of the remedies does not apply to the model (after the earlier ones).
    """
    model_names, settings_names = split(names)
    if settings_names:
        raise ValueError(
            f"{', '.join(settings_names)} change the training settings, not the model: use "
            "gw.remedies.apply_settings(config, names), or panel.retrain(names)."
        )
    settings = dataclasses.replace(settings or TrainConfig(), seed=seed)
    result = copy_without_hooks(model)
    for name in model_names:
        result = REMEDIES[name].plan(copy_without_hooks(result), settings).build()
    return result


def apply_settings(settings: TrainConfig, names: Iterable[str]) -> TrainConfig:
    """Apply training remedies (``SETTINGS_NAMES``) to ``settings``; new settings.

    Raises
    ------
    ValueError
        An unknown name or a model remedy (use :func:`apply_remedies`).
    RemedyNotApplicable
        A remedy does not apply (e.g. ``clip_grad`` when the settings already clip).
    """
    model_names, settings_names = split(names)
    if model_names:
        raise ValueError(
            f"{', '.join(model_names)} change the model, not the training settings: use "
            "gw.apply_remedies(model, names)."
        )
    for name in settings_names:  # a settings plan reads no model: an empty one stands in
        settings = REMEDIES[name].plan(nn.Module(), settings).build()
    return settings


def suggest(
    names: Iterable[str],
    model: nn.Module,
    settings: TrainConfig | None = None,
    *,
    applicable: Collection[str] | None = None,
) -> tuple[str, ...]:
    """``names`` (e.g. a diagnosis's), each that cannot apply replaced by its ``instead``.

    Names that cannot apply and have no stand-in stay (the fix bar shows them disabled, with
    the reason); e.g. BatchNorm refused on a model that already has it gives LayerNorm.
    ``applicable``: the remedies already known to apply to ``model`` under ``settings``
    (each :func:`check` copies the model); None: check each where it matters.
    """

    def applies(name: str) -> bool:
        return name in applicable if applicable is not None else _applies(model, name, settings)

    result: list[str] = []
    for name in names:
        stand_in = _known(name).instead
        if stand_in is not None and not applies(name):
            name = stand_in if applies(stand_in) else name
        result.append(name)
    return tuple(dict.fromkeys(result))


def _applies(model: nn.Module, name: str, settings: TrainConfig | None) -> bool:
    try:
        check(model, name, settings)
    except RemedyNotApplicable:
        return False
    return True


def _known(name: str) -> Remedy:
    if name not in REMEDIES:
        raise ValueError(f"Unknown remedy {name!r}; choose from {', '.join(REMEDIES)}.")
    return REMEDIES[name]
