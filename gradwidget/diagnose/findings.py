"""What a diagnosis says: :class:`Thresholds`, :class:`Severity` and :class:`Finding`.

The rules that produce findings live in :mod:`gradwidget.diagnose.rules`; this module is their
vocabulary (kinds, titles, severities, suggested remedies), shared by the rules, the panel and
the reports. Pure numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from ..history import History

__all__ = ["KINDS", "Finding", "Severity", "Thresholds", "make_finding"]


@dataclass(frozen=True)
class Thresholds:
    """Limits of the diagnosis rules, with published defaults where there are any.

    Attributes
    ----------
    window : int
        Recent points a rule takes the median of (default 20).
    min_samples : int
        Finite points a layer needs inside the window before a rule judges it (default 10).
    vanishing_ratio, vanishing_first_norm : float
        Vanishing gradients: first/last layer gradient-norm ratio below ``1e-3`` and the first
        layer's norm below ``1e-4`` (AUTOTRAINER, Zhang et al., ICSE 2021).
    exploding_ratio : float
        Exploding gradients: first/last layer gradient-norm ratio above ``70`` (AUTOTRAINER).
    dead_fraction : float
        Dying ReLU: at least ``0.7`` of a layer's units output zero for the whole batch
        (AUTOTRAINER).
    saturated_fraction : float
        Saturation: at least ``0.5`` of a sigmoid/tanh layer's outputs sit in the flat tails,
        i.e. half the layer passes almost no gradient (our choice).
    plateau_window : int
        Loss points the plateau rule looks back over (default 40: twice ``window``, since a
        loss needs a longer view than a gradient norm to tell slow progress from none, yet few
        enough for a sampled run; 600 steps at ``grad_every=12`` leave about 50 points).
    plateau_improvement, plateau_level : float
        Plateau: the loss improved by less than ``0.01`` (1 %) over ``plateau_window`` while
        still above ``0.5`` times its starting value (our choice: a run that has already halved
        its loss is converging, not stuck).
    """

    window: int = 20
    min_samples: int = 10
    vanishing_ratio: float = 1e-3
    vanishing_first_norm: float = 1e-4
    exploding_ratio: float = 70.0
    dead_fraction: float = 0.7
    saturated_fraction: float = 0.5
    plateau_window: int = 40
    plateau_improvement: float = 0.01
    plateau_level: float = 0.5

    def __post_init__(self) -> None:
        if not 1 <= self.min_samples <= self.window:
            raise ValueError(f"need 1 <= min_samples <= window, got {self}")
        if self.plateau_window < 2:
            raise ValueError(f"plateau_window must be at least 2, got {self.plateau_window}")


class Severity(IntEnum):
    """How urgent a finding is; ordered ``INFO < WARNING < CRITICAL``."""

    INFO = 1
    WARNING = 2
    CRITICAL = 3


# kind -> (title, severity, remedies most useful first), most severe first
# (names of gradwidget.remedies.REGISTRY; a test checks that each is registered)
KINDS: dict[str, tuple[str, Severity, tuple[str, ...]]] = {
    "non_finite": ("NaN / Inf values", Severity.CRITICAL, ("clip_grad", "lower_lr", "batchnorm")),
    "exploding": (
        "Exploding gradients",
        Severity.CRITICAL,
        ("clip_grad", "lower_lr", "he_init", "batchnorm"),
    ),
    # A skip connection carries the gradient past every layer of a deep stack unshrunk.
    "vanishing": (
        "Vanishing gradients",
        Severity.WARNING,
        ("residual", "relu", "he_init", "batchnorm"),
    ),
    "dead_units": ("Dead ReLU units", Severity.WARNING, ("leaky_relu", "he_init", "batchnorm")),
    "saturation": ("Saturated activations", Severity.WARNING, ("relu", "batchnorm")),
    "plateau": ("Loss plateau", Severity.INFO, ()),
}


@dataclass(frozen=True)
class Finding:
    """One diagnosed problem and what to do about it.

    Attributes
    ----------
    kind : str
        One of ``"non_finite"``, ``"exploding"``, ``"vanishing"``, ``"dead_units"``,
        ``"saturation"``, ``"plateau"``.
    severity : Severity
    layers : tuple of str
        The affected layers, input to output (empty when the problem is not per layer).
    evidence : dict of str to float
        The numbers behind the finding.
    message : str
        The cause in plain words, with the numbers.
    remedies : tuple of str
        Names from ``gradwidget.remedies.REGISTRY``, most useful first.
    """

    kind: str
    severity: Severity
    layers: tuple[str, ...]
    evidence: dict[str, float]
    message: str
    remedies: tuple[str, ...]

    @property
    def title(self) -> str:
        """A short heading, e.g. ``"Vanishing gradients"``."""
        return KINDS[self.kind][0]


def make_finding(
    kind: str, history: History, layers: np.ndarray, evidence: dict[str, float], message: str
) -> Finding:
    """A :class:`Finding` of ``kind`` naming the layers in ``layers`` (a boolean mask)."""
    _, severity, remedies = KINDS[kind]
    names = tuple(history.layers[i] for i in np.flatnonzero(layers))
    return Finding(kind, severity, names, evidence, message, remedies)
