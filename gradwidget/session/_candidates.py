"""Which fix sets a search tries, most promising first, from a diagnosis's findings."""

from __future__ import annotations

import dataclasses
import itertools

from torch import nn

from ..diagnose.findings import KINDS
from ..diagnose.rules import Finding
from ..errors import RemedyNotApplicable
from ..remedies import LABELS, REMEDIES, Target, apply_settings, split, suggest
from ..train.training import TrainConfig

__all__ = ["candidates", "fix_label"]


def candidates(
    findings: tuple[Finding, ...], model: nn.Module, config: TrainConfig
) -> list[tuple[str, ...]]:
    """Fix sets to try, most promising first: each suggested fix alone (most severe finding's
    first), then pairs, then triples..., one fix per group, ranked by the sum of ranks."""
    names = [n for f in findings for n in (*f.remedies, *_also(f.kind))]
    ranked = suggest(names, model, config)
    ranks = {name: i for i, name in enumerate(ranked)}
    sets = []
    for size in range(1, len(ranked) + 1):
        combos = [c for c in itertools.combinations(ranked, size) if _compatible(c, config)]
        sets += sorted(combos, key=lambda c: sum(ranks[n] for n in c))
    return sets


def _also(kind: str) -> tuple[str, ...]:
    """Fixes worth a trial beyond a kind's own, for causes the rules cannot see: weights
    initialised too large end in NaN as exploding gradients do (AUTOTRAINER counts NaN as
    exploding), and saturate sigmoid/tanh units (a fresh Glorot init rescales them)."""
    return {"non_finite": KINDS["exploding"][2], "saturation": ("xavier_init",)}.get(kind, ())


def _compatible(names: tuple[str, ...], config: TrainConfig) -> bool:
    """One fix per exclusive group (activation, init, norm), and training fixes only where
    each changes what the others leave: clip + lower LR, Adam + raise LR, never lower + raise
    LR (rates compared to 6 digits: 0.1 * 10 is not quite 1)."""
    try:
        split(names)
    except ValueError:
        return False
    training = [n for n in names if REMEDIES[n].target is Target.SETTINGS]
    try:
        whole = _rounded(apply_settings(config, training))
    except RemedyNotApplicable:
        return False
    subsets = (c for k in range(len(training)) for c in itertools.combinations(training, k))
    return all(_rounded(apply_settings(config, subset)) != whole for subset in subsets)


def _rounded(config: TrainConfig) -> TrainConfig:
    return dataclasses.replace(config, lr=float(f"{config.lr:.6g}"))


def fix_label(fixes: tuple[str, ...]) -> str:
    return " + ".join(LABELS[n] for n in fixes) if fixes else "no fix"
