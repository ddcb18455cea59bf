"""Diagnose gradient pathologies from a training :class:`~gradwidget.history.History`.

Pure numpy: the rules read recorded series, never the model, so they work on a live run, a
snapshot or a history loaded from JSON. Every rule except ``non_finite`` judges medians over the
last part of the run *in steps* (:mod:`.windows`), so one noisy step can neither raise nor clear
a finding, and sparse sampling cannot make early steps stand for the end of a run; a NaN or Inf
is never noise, so ``non_finite`` reads the whole run. The loss rules live in :mod:`.loss`, the
update-ratio rule in :mod:`.updates`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..history import History
from ._text import listing
from .findings import Finding, Severity, Thresholds, make_finding
from .loss import oscillating, plateau, slow_convergence
from .nonfinite import non_finite
from .updates import uneven_updates
from .windows import last_step, span, window_medians

__all__ = ["Finding", "Severity", "Thresholds", "diagnose"]


_DEFAULT_THRESHOLDS = Thresholds()


def diagnose(history: History, thresholds: Thresholds = _DEFAULT_THRESHOLDS) -> list[Finding]:
    """Check a training history for gradient pathologies.

    Parameters
    ----------
    history : History
        Series recorded by a :class:`~gradwidget.Recorder` (``grad_norm``, ``train_loss``,
        ``loss``, ``nonfinite``, ``dead_frac``, ``saturated_frac``, ``update_ratio``) and a
        training run (``accuracy``, ``test_accuracy``); missing series are skipped.
    thresholds : Thresholds
        The rule limits.

    Returns
    -------
    list of Finding
        Most severe first (ties in the order of :data:`~gradwidget.diagnose.findings.KINDS`:
        non_finite, exploding, vanishing, dead_units, saturation, oscillating, update_ratio,
        slow_convergence, plateau); empty when healthy.
    """
    history = history.frozen()  # each series copied once, not once per rule
    # The rules run most severe first (see KINDS), so the list needs no sorting.
    rules = (
        non_finite,
        _exploding,
        _vanishing,
        _dead_units,
        _saturation,
        oscillating,
        uneven_updates,
        slow_convergence,
        plateau,
    )
    return [f for rule in rules if (f := rule(history, thresholds)) is not None]


# -- gradient flow: vanishing and exploding ---------------------------------------------------


@dataclass(frozen=True)
class _Flow:
    """Window-median gradient norm per layer, and the first and last layer that have one."""

    norms: np.ndarray
    first: int
    last: int
    steps: int  # the window, in steps

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

    def summary(self, verb: str) -> str:
        ev = self.evidence()
        return (
            f"Gradients {verb} on the way back to the input: over the last {self.steps} steps "
            f"the first layer's gradient norm ({ev['first_norm']:.2g}) is {ev['ratio']:.3g} "
            f"times the last layer's ({ev['last_norm']:.2g}), a factor of about "
            f"{ev['per_layer_factor']:.2g} per layer. "
        )


def _gradient_flow(history: History, t: Thresholds) -> _Flow | None:
    last = last_step(history)
    norms = window_medians(history.series("grad_norm"), last, t)
    judged = np.flatnonzero(np.isfinite(norms))  # NaN columns: layers without a gradient
    if judged.size < 2 or norms[judged[-1]] <= 0:
        return None
    steps = span(last, t.window_fraction, t.window)
    return _Flow(norms, int(judged[0]), int(judged[-1]), steps)


def _vanishing(history: History, t: Thresholds) -> Finding | None:
    flow = _gradient_flow(history, t)
    if flow is None or flow.ratio >= t.vanishing_ratio:
        return None
    if flow.norms[flow.first] >= t.vanishing_first_norm:
        return None
    weak = flow.norms < t.vanishing_ratio * flow.norms[flow.last]
    message = flow.summary("vanish") + (
        "Backpropagation multiplies one local derivative per layer (the chain rule); sigmoid's "
        "derivative is at most 0.25, so ten sigmoid layers can shrink a gradient by "
        "0.25**10 ~ 1e-6, and small weights shrink it further. These layers barely learn: "
        f"{listing(history, weak, flow.norms, '.2g')}. A skip connection x + f(x) carries the "
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
    message = flow.summary("explode") + (
        "The chain rule multiplies the gradient by every layer's weights times its "
        "activation's derivative; when that product exceeds 1 (weights initialised too large) "
        "the gradient grows geometrically with depth and the early layers take huge, unstable "
        f"steps: {listing(history, strong, flow.norms, '.2g')}. Clipping the gradient norm and "
        "a lower learning rate bound each step; He init scales the weights so each layer keeps "
        "the gradient's size; BatchNorm rescales every layer's input."
    )
    return make_finding("exploding", history, strong, flow.evidence(), message)


# -- unit statistics: dead and saturated ------------------------------------------------------

_DEAD_TEXT = (
    "Dead ReLU units: in these layers most units output 0 for the whole batch (median over the "
    "last {window} steps): {layers}. A ReLU's derivative is 0 wherever its input is negative, "
    "so a dead unit gets no gradient, never updates, and never recovers; a large negative bias "
    "or one oversized step puts units there. LeakyReLU keeps a small slope below 0, so dead "
    "units still get a gradient; He init restarts the weights with zero bias; BatchNorm "
    "centres each unit's input so about half of them fire."
)
_SATURATION_TEXT = (
    "Saturated activations: in these layers most sigmoid/tanh outputs sit in the flat tails "
    "(median over the last {window} steps): {layers}. There the derivative is close to 0, so "
    "almost no gradient passes back through them. ReLU has no flat positive tail; BatchNorm "
    "keeps the pre-activations near 0, where the derivative is largest."
)


def _fraction_rule(
    history: History, t: Thresholds, kind: str, metric: str, limit: float, text: str
) -> Finding | None:
    """A finding for the layers whose window-median ``metric`` (a fraction) reaches ``limit``."""
    last = last_step(history)
    medians = window_medians(history.series(metric), last, t)
    # Fractions are stored as float32 (7/10 -> 0.69999999): compare at that precision.
    hit = medians >= np.float32(limit)  # NaN (not applicable) compares False
    if not hit.any():
        return None
    layers = listing(history, hit, medians, ".0%")
    evidence = {"fraction": float(np.nanmax(medians)), "layers_affected": float(hit.sum())}
    message = text.format(window=span(last, t.window_fraction, t.window), layers=layers)
    return make_finding(kind, history, hit, evidence, message)


def _dead_units(history: History, t: Thresholds) -> Finding | None:
    return _fraction_rule(history, t, "dead_units", "dead_frac", t.dead_fraction, _DEAD_TEXT)


def _saturation(history: History, t: Thresholds) -> Finding | None:
    limit = t.saturated_fraction
    return _fraction_rule(history, t, "saturation", "saturated_frac", limit, _SATURATION_TEXT)
