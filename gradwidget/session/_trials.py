"""What a search for a fix found: each trial's standing and score, the result, the verdict."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..diagnose.rules import Finding, Severity, Thresholds, diagnose
from ..train.training import Run, RunState
from ._candidates import fix_label

__all__ = [
    "COLUMNS",
    "AutofixResult",
    "Standing",
    "Trial",
    "healthy",
    "join_words",
    "lower_first",
    "standing",
    "verdict",
]


@dataclass(frozen=True)
class Trial:
    """One short trial: its fixes, its standing at the end and its score.

    ``helped`` says whether it may win: it ran to its end, cleared a finding or improved the
    metric by 2 points, lost no more than 2 points, and raised no new warning (unless it
    gained more than 10 points on a baseline that did not diverge).
    """

    fixes: tuple[str, ...]
    score: float
    loss: float
    accuracy: float | None
    findings: tuple[str, ...]
    seconds: float
    steps: int
    helped: bool
    note: str = ""


@dataclass(frozen=True)
class AutofixResult:
    """What the search found.

    Attributes
    ----------
    findings : tuple of Finding
        The baseline's diagnosis.
    winner : tuple of str
        The winning fixes; empty when nothing needed fixing or nothing helped (``message``
        says which).
    run : Run or None
        The winner's full-length run (None without a winner, or when stopped before it).
    baseline : Run or None
        The run without fixes the search compared against.
    message : str
        What won and why, with numbers, or why nothing did.
    trial_list : tuple of Trial
        Every trial, in the order run.
    stopped : bool
        Stopped (Stop, or out of time) before the search's end.
    """

    findings: tuple[Finding, ...]
    winner: tuple[str, ...]
    run: Run | None
    baseline: Run | None
    message: str
    trial_list: tuple[Trial, ...] = ()
    stopped: bool = False

    @property
    def trials(self) -> Any:
        """A pandas DataFrame, one row per trial: fixes, score, final loss, accuracy, ..."""
        import pandas as pd  # optional: only the table needs it

        rows = [
            {"fixes": fix_label(t.fixes), "score": t.score, "final_loss": t.loss,
             "accuracy": t.accuracy, "findings": ", ".join(t.findings), "seconds": t.seconds,
             "steps": t.steps, "helped": t.helped, "note": t.note}
            for t in self.trial_list
        ]  # fmt: skip
        return pd.DataFrame(rows, columns=list(COLUMNS))


COLUMNS = ("fixes", "score", "final_loss", "accuracy", "findings", "seconds", "steps",
            "helped", "note")  # fmt: skip


@dataclass(frozen=True)
class Standing:
    """A run's loss (median of its last tenth), accuracy and findings at a step."""

    loss: float
    accuracy: float | None
    findings: tuple[Finding, ...]

    def score(self, base: Standing, n_fixes: int) -> tuple[float, bool]:
        """Score against ``base``: accuracy gain (or relative loss drop), findings cleared."""
        if not np.isfinite(self.loss):  # a diverged run clears nothing, whatever it shows
            return -1.0 - 0.01 * n_fixes, False
        if self.accuracy is not None and base.accuracy is not None:
            gain = self.accuracy - base.accuracy
        elif np.isfinite(base.loss):
            gain = float(np.clip((base.loss - self.loss) / max(base.loss, 1e-12), -1.0, 1.0))
        else:
            gain = 1.0  # finite against a diverged baseline
        before = {f.kind for f in base.findings}
        after = {f.kind for f in self.findings}
        cleared = len(before - after) / max(len(before), 1)
        new = {f.kind for f in self.findings if f.severity > Severity.INFO} - before
        score = gain + 0.5 * cleared - 0.25 * len(new) - 0.01 * n_fixes  # fewer fixes on a tie
        # A new warning vetoes a fix unless it buys more than 10 points over a baseline that
        # trained (a diverged one scores 0: any finite run would beat it, dead or not).
        worth_it = gain > 0.1 and bool(np.isfinite(base.loss))
        return score, gain >= -0.02 and (cleared > 0 or gain > 0.02) and (not new or worth_it)


def standing(
    run: Run, upto: int, thresholds: Thresholds, findings: tuple[Finding, ...] | None = None
) -> Standing:
    history = run.history
    curve = history.loss_curve()
    steps, losses = curve.steps, curve.last[:, 0].astype(np.float64)
    recent = losses[(steps < upto) & (steps >= upto - max(10, upto // 10))]
    loss = float(np.median(recent)) if recent.size and np.isfinite(recent).all() else np.inf
    if run.state is RunState.DIVERGED and upto >= run.step:
        loss = np.inf
    accuracy = history.series("test_accuracy")
    seen = accuracy.last[accuracy.steps < upto, 0]
    acc = float(seen[-1]) if seen.size else (0.0 if loss == np.inf else None)
    found = tuple(diagnose(history, thresholds)) if findings is None else findings
    return Standing(loss, acc, found)


def healthy(baseline: Run) -> str:
    return f"No finding on the baseline: nothing to fix ({_metric(baseline)})."


def verdict(
    fixes: tuple[str, ...], findings: tuple[Finding, ...], base: Run, run: Run, t: Thresholds
) -> str:
    after = diagnose(run.history, t)
    before, now = {f.kind for f in findings}, {f.kind for f in after}
    gone = [lower_first(f.title) for f in findings if f.kind not in now]
    kept = [lower_first(f.title) for f in findings if f.kind in now]
    new = [lower_first(f.title) for f in after if f.kind not in before]
    said = [
        f"{join_words(gone)} gone" if gone else "",
        f"{join_words(kept)} still there" if kept else "",
        f"new: {join_words(new)}" if new else "",
    ]
    return f"{fix_label(fixes)}: {'; '.join(filter(None, said))}; {_metric(base, run)}"


def _metric(base: Run, run: Run | None = None) -> str:
    """ "test accuracy 9.8 % -> 93 %" (or the final loss without a test split)."""
    runs = [base] if run is None else [base, run]
    if all(r.test_accuracy is not None or r.state is RunState.DIVERGED for r in runs):
        return "test accuracy " + " -> ".join(_reading(r, _pct(r.test_accuracy)) for r in runs)
    return "final loss " + " -> ".join(_reading(r, f"{r.loss or 0:.3g}") for r in runs)


def _reading(run: Run, value: str) -> str:
    return "diverged" if run.state is RunState.DIVERGED else value


def _pct(value: float | None) -> str:
    percent = 100 * (value or 0.0)
    return f"{percent:.1f} %" if percent < 10 else f"{percent:.0f} %"


def lower_first(title: str) -> str:
    """Lower-case a title's first word unless it is an acronym ("NaN / Inf values")."""
    first = title.split(" ", 1)[0]
    return title[:1].lower() + title[1:] if first[1:].islower() else title


def join_words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
