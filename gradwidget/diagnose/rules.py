"""Diagnose gradient pathologies from a training :class:`~gradwidget.history.History`.

Pure numpy: the rules read recorded series, never the model, so they work on a live run, a
snapshot or a history loaded from JSON. Every rule except ``non_finite`` judges the median of a
window of recent points, so one noisy step can neither raise nor clear a finding; a NaN or Inf
is never noise, so ``non_finite`` reads the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..history import History
from .findings import Finding, Severity, Thresholds, make_finding
from .structure import layer_groups

__all__ = ["Finding", "Severity", "Thresholds", "diagnose"]


_DEFAULT_THRESHOLDS = Thresholds()


def diagnose(history: History, thresholds: Thresholds = _DEFAULT_THRESHOLDS) -> list[Finding]:
    """Check a training history for gradient pathologies.

    Parameters
    ----------
    history : History
        Series recorded by a :class:`~gradwidget.Recorder` (``grad_norm``, ``loss``,
        ``nonfinite``, ``dead_frac``, ``saturated_frac``); missing series are skipped.
    thresholds : Thresholds
        The rule limits.

    Returns
    -------
    list of Finding
        Most severe first (ties in the order non_finite, exploding, vanishing, dead_units,
        saturation, plateau); empty when healthy.
    """
    # The rules run most severe first (see KINDS), so the list needs no sorting.
    rules = (_non_finite, _exploding, _vanishing, _dead_units, _saturation, _plateau)
    return [f for rule in rules if (f := rule(history, thresholds)) is not None]


def _window_medians(values: np.ndarray, t: Thresholds) -> np.ndarray:
    """Per-column median of the finite values in the last ``window`` rows; NaN if too few."""
    tail = values[-t.window :].astype(np.float64)
    finite = np.isfinite(tail)
    enough = finite.sum(axis=0) >= t.min_samples
    medians = np.full(tail.shape[1], np.nan)
    if enough.any():  # nanmedian only on columns that have data: no all-NaN warnings
        medians[enough] = np.nanmedian(np.where(finite, tail, np.nan)[:, enough], axis=0)
    return medians


def _listing(history: History, mask: np.ndarray, values: np.ndarray, fmt: str) -> str:
    """The layers in ``mask`` with their values; a block whose every layer is in ``mask`` is
    named once, as a block (a 12-block transformer would otherwise list 70 names)."""
    parts, named = [], set()
    for block in layer_groups(history.layers).blocks:
        rows = list(block.layers)
        if mask[rows].all():
            low, high = np.nanmin(values[rows]), np.nanmax(values[rows])
            text = f"block {block.short} (all {len(rows)} layers, {low:{fmt}} to {high:{fmt}})"
            parts.append((rows[0], text))
            named.update(rows)
    parts += [
        (i, f"{history.layers[i]} ({values[i]:{fmt}})")
        for i in np.flatnonzero(mask).tolist()
        if i not in named
    ]
    return ", ".join(text for _, text in sorted(parts))


# -- gradient flow: vanishing and exploding ---------------------------------------------------


@dataclass(frozen=True)
class _Flow:
    """Window-median gradient norm per layer, and the first and last layer that have one."""

    norms: np.ndarray
    first: int
    last: int

    @property
    def ratio(self) -> float:
        return float(self.norms[self.first] / self.norms[self.last])

    def evidence(self) -> dict[str, float]:
        # The geometric-mean factor per layer shows the chain rule at work (sigmoid: <= 0.25).
        return {
            "ratio": self.ratio,
            "first_norm": float(self.norms[self.first]),
            "last_norm": float(self.norms[self.last]),
            "per_layer_factor": self.ratio ** (1 / (self.last - self.first)),
        }

    def summary(self, verb: str, t: Thresholds) -> str:
        ev = self.evidence()
        return (
            f"Gradients {verb} on the way back to the input: over the last {t.window} samples "
            f"the first layer's gradient norm ({ev['first_norm']:.2g}) is {ev['ratio']:.3g} "
            f"times the last layer's ({ev['last_norm']:.2g}), a factor of about "
            f"{ev['per_layer_factor']:.2g} per layer. "
        )


def _gradient_flow(history: History, t: Thresholds) -> _Flow | None:
    norms = _window_medians(history.grad_norm, t)
    judged = np.flatnonzero(np.isfinite(norms))  # NaN columns: layers without a gradient
    if judged.size < 2 or norms[judged[-1]] <= 0:
        return None
    return _Flow(norms, int(judged[0]), int(judged[-1]))


def _vanishing(history: History, t: Thresholds) -> Finding | None:
    flow = _gradient_flow(history, t)
    if flow is None or flow.ratio >= t.vanishing_ratio:
        return None
    if flow.norms[flow.first] >= t.vanishing_first_norm:
        return None
    weak = flow.norms < t.vanishing_ratio * flow.norms[flow.last]
    message = flow.summary("vanish", t) + (
        "Backpropagation multiplies one local derivative per layer (the chain rule); sigmoid's "
        "derivative is at most 0.25, so ten sigmoid layers can shrink a gradient by "
        "0.25**10 ~ 1e-6, and small weights shrink it further. These layers barely learn: "
        f"{_listing(history, weak, flow.norms, '.2g')}. A skip connection x + f(x) carries the "
        "gradient past each block unshrunk, ReLU passes a derivative of 1 where active, He "
        "init keeps the gradient's scale from layer to layer, and BatchNorm keeps "
        "pre-activations where the derivative is large."
    )
    return make_finding("vanishing", history, weak, flow.evidence(), message)


def _exploding(history: History, t: Thresholds) -> Finding | None:
    flow = _gradient_flow(history, t)
    if flow is None or flow.ratio <= t.exploding_ratio:
        return None
    strong = flow.norms > t.exploding_ratio * flow.norms[flow.last]
    message = flow.summary("explode", t) + (
        "The chain rule multiplies the gradient by every layer's weights times its "
        "activation's derivative; when that product exceeds 1 (weights initialised too large) "
        "the gradient grows geometrically with depth and the early layers take huge, unstable "
        f"steps: {_listing(history, strong, flow.norms, '.2g')}. Clipping the gradient norm and "
        "a lower learning rate bound each step; He init scales the weights so each layer keeps "
        "the gradient's size; BatchNorm rescales every layer's input."
    )
    return make_finding("exploding", history, strong, flow.evidence(), message)


# -- unit statistics: dead and saturated ------------------------------------------------------

_DEAD_TEXT = (
    "Dead ReLU units: in these layers most units output 0 for the whole batch (median over the "
    "last {window} samples): {layers}. A ReLU's derivative is 0 wherever its input is negative, "
    "so a dead unit gets no gradient, never updates, and never recovers; a large negative bias "
    "or one oversized step puts units there. LeakyReLU keeps a small slope below 0, so dead "
    "units still get a gradient; He init restarts the weights with zero bias; BatchNorm "
    "centres each unit's input so about half of them fire."
)
_SATURATION_TEXT = (
    "Saturated activations: in these layers most sigmoid/tanh outputs sit in the flat tails "
    "(median over the last {window} samples): {layers}. There the derivative is close to 0, so "
    "almost no gradient passes back through them. ReLU has no flat positive tail; BatchNorm "
    "keeps the pre-activations near 0, where the derivative is largest."
)


def _fraction_rule(
    history: History, t: Thresholds, kind: str, metric: str, limit: float, text: str
) -> Finding | None:
    """A finding for the layers whose window-median ``metric`` (a fraction) reaches ``limit``."""
    medians = _window_medians(history.series(metric).last, t)
    # Fractions are stored as float32 (7/10 -> 0.69999999): compare at that precision.
    hit = medians >= np.float32(limit)  # NaN (not applicable) compares False
    if not hit.any():
        return None
    layers = _listing(history, hit, medians, ".0%")
    evidence = {"fraction": float(np.nanmax(medians)), "layers_affected": float(hit.sum())}
    return make_finding(kind, history, hit, evidence, text.format(window=t.window, layers=layers))


def _dead_units(history: History, t: Thresholds) -> Finding | None:
    return _fraction_rule(history, t, "dead_units", "dead_frac", t.dead_fraction, _DEAD_TEXT)


def _saturation(history: History, t: Thresholds) -> Finding | None:
    limit = t.saturated_fraction
    return _fraction_rule(history, t, "saturation", "saturated_frac", limit, _SATURATION_TEXT)


# -- whole-run signals: non-finite values and the loss -----------------------------------------


_AMP_SKIP_RUN = 10  # more steps in a row skipped by a GradScaler than backing off needs
_AMP_SCALE_FLOOR = 1.0  # a loss scale below 1 no longer protects anything: it has collapsed


def _skipped_by_scaler(history: History, steps: np.ndarray) -> np.ndarray:
    """Which buckets ending at ``steps`` hold a step that a GradScaler skipped by design.

    Under AMP an Inf/NaN gradient makes the scaler skip the step and halve its scale: that is
    the mechanism working, not a failure, unless the skips persist (more than
    ``_AMP_SKIP_RUN`` in a row, the longest run kept in ``amp_skipped``'s hi) or the scale
    collapses below ``_AMP_SCALE_FLOOR``. A bucket covers the steps since the bucket before.
    """
    at = history.series("amp_skipped").steps
    if at.size == 0 or _persistent_skips(history).size:
        return np.zeros(len(steps), bool)
    starts = np.concatenate([[-1], steps[:-1]])
    return np.searchsorted(at, steps, "right") > np.searchsorted(at, starts, "right")


def _persistent_skips(history: History) -> np.ndarray:
    """Steps a GradScaler skipped, when the skips persist or the scale collapsed; else none."""
    skipped, scale = history.series("amp_skipped"), history.series("amp_scale")
    persists = skipped.hi.max(initial=0) > _AMP_SKIP_RUN
    if persists or scale.lo.min(initial=np.inf) < _AMP_SCALE_FLOOR:
        return skipped.steps
    return np.zeros(0, np.int64)


def _non_finite(history: History, t: Thresholds) -> Finding | None:
    counts, loss = history.series("nonfinite"), history.series("loss")
    # hi keeps a bucket's largest count, so one bad step survives any amount of compaction.
    worst_counts = np.nan_to_num(counts.hi)  # NaN: a layer without gradient, nothing counted
    worst_counts[_skipped_by_scaler(history, counts.steps)] = 0.0
    bad_rows, bad_layers = (worst_counts > 0).any(axis=1), (worst_counts > 0).any(axis=0)
    # NaN can hide in a merged bucket (fmax ignores it), but an Inf or a NaN "last" cannot.
    bad_loss = ~(np.isfinite(loss.last) & np.isfinite(loss.lo) & np.isfinite(loss.hi)).all(1)
    bad_loss &= ~_skipped_by_scaler(history, loss.steps)
    skips = _persistent_skips(history)
    steps = np.concatenate([counts.steps[bad_rows], loss.steps[bad_loss], skips])
    if steps.size == 0:
        return None
    worst = float(worst_counts.max(initial=0.0))
    where = ["the loss"] if bad_loss.any() else []
    if skips.size:
        where.append(f"the scaled gradients of {skips.size} steps the GradScaler skipped")
    if worst:
        per_layer = worst_counts.max(axis=0)
        where.insert(0, f"the gradients of {_listing(history, bad_layers, per_layer, '.0f')}")
    message = (
        f"NaN/Inf values appeared by step {steps.min()} in {' and '.join(where)}. This is "
        "never noise: once a NaN reaches the weights, every later output is NaN. The usual "
        "cause is a learning rate too large for the gradient's scale: each update overshoots "
        "and the loss grows until float32 overflows. Lower the learning rate (e.g. 10x) or "
        "clip gradients; BatchNorm lets a network tolerate larger steps."
    )
    evidence = {
        "first_step": float(steps.min()),
        "nonfinite_entries": worst,
        "loss_nonfinite": float(bad_loss.any()),
    }
    return make_finding("non_finite", history, bad_layers, evidence, message)


def _plateau(history: History, t: Thresholds) -> Finding | None:
    loss = history.loss.astype(np.float64)
    loss = loss[np.isfinite(loss)]  # non-finite losses are the non_finite rule's business
    if loss.size < t.plateau_window:
        return None
    half, recent = t.plateau_window // 2, loss[-t.plateau_window :]
    # Medians of half windows: robust to minibatch noise, unlike two single points.
    start, before, now = (float(np.median(x)) for x in (loss[:half], recent[:half], recent[half:]))
    if start <= 0 or before <= 0:
        return None  # a relative improvement needs a positive loss
    improvement = (before - now) / before
    if improvement >= t.plateau_improvement or now <= t.plateau_level * start:
        return None
    message = (
        f"The loss has stalled: it improved by {improvement:.1%} over the last "
        f"{t.plateau_window} samples and is still {now:.3g}, more than "
        f"{t.plateau_level:.0%} of its starting value {start:.3g}. If a gradient finding is "
        "listed too, fix that first; otherwise try a larger learning rate or another optimizer."
    )
    evidence = {"improvement": improvement, "loss": now, "start_loss": start}
    return make_finding("plateau", history, np.zeros(0, bool), evidence, message)
