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

    Every rule judges the last part of the run *in steps*, however sparsely a series was
    sampled: a healthy run must not be judged by its first steps because later ones were
    thinned.

    Attributes
    ----------
    window_fraction, window : float, int
        Gradient and unit rules judge the last ``window_fraction`` (default ``0.1``) of the
        steps seen, and at least ``window`` steps (default 20).
    min_samples : int
        Finite points a series needs inside its window before a rule judges it (default 3: a
        median outvotes one odd point, and the time budget's thinnest sampling, every 64
        steps, leaves 3 in the last half of a 400-step run). A series sampled too sparsely for
        that has its window grown back, point by point, but never past the last
        ``window_limit`` of the run.
    window_limit : float
        The largest part of the run a window may grow back to (default ``0.5``).
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
    loss_fraction, plateau_window : float, int
        The loss rules read the every-step loss over the last ``loss_fraction`` (default
        ``0.2``, twice the gradient window: a loss needs a longer view to tell slow progress
        from none) of the steps seen, and at least ``plateau_window`` steps (default 40).
    loss_steps : int
        The loss rules judge from this step on (default 100): a loss needs some steps to start
        falling (AUTOTRAINER judges from 30 % of the planned epochs; a history does not know
        its plan).
    plateau_improvement, plateau_level : float
        Plateau: the loss improved by less than ``0.01`` (1 %) from the first to the second
        half of its window while still above ``0.5`` times its starting value (our choice: a
        run that has already halved its loss is converging, not stuck).
    slow_factor : float
        Slow convergence: the loss still falls (by at least ``plateau_improvement``) but,
        at the pace of its window, would need more than ``slow_factor`` (default 1) times the
        steps seen so far to reach ``plateau_level`` of its start (AUTOTRAINER's "slow
        convergence", read on the loss instead of per-epoch accuracy).
    oscillation : float
        Oscillating loss: the loss swings by at least ``0.25`` of its starting value, counted
        as the rises of its step-chunk medians inside a window where it does not fall, or as
        how far it climbed back above the lowest level it reached (our scale for AUTOTRAINER's
        peak-to-trough accuracy swings, zeta = 0.03 per epoch, which minibatch noise of a
        per-step loss would trip).
    accuracy_drop : float
        Oscillating accuracy: a recorded accuracy falls by at least ``0.2`` below its best in
        the last half of the run.
    update_gap, update_high : float
        Update-to-weight ratios (||delta w|| / ||w|| per step, customarily near ``1e-3``): a
        layer updating less than ``update_gap`` (``1e-2``: two orders of magnitude) times the
        last layer's ratio barely moves; any above ``update_high`` (``0.1``: a tenth of the
        weights per step) is thrown around (our choices around the 1e-3 guide).
    """

    window_fraction: float = 0.1
    window: int = 20
    min_samples: int = 3
    window_limit: float = 0.5
    vanishing_ratio: float = 1e-3
    vanishing_first_norm: float = 1e-4
    exploding_ratio: float = 70.0
    dead_fraction: float = 0.7
    saturated_fraction: float = 0.5
    loss_fraction: float = 0.2
    plateau_window: int = 40
    loss_steps: int = 100
    plateau_improvement: float = 0.01
    plateau_level: float = 0.5
    slow_factor: float = 1.0
    oscillation: float = 0.25
    accuracy_drop: float = 0.2
    update_gap: float = 1e-2
    update_high: float = 0.1

    def __post_init__(self) -> None:
        if not 1 <= self.min_samples <= self.window:
            raise ValueError(f"need 1 <= min_samples <= window, got {self}")
        if self.plateau_window < 2:
            raise ValueError(f"plateau_window must be at least 2, got {self.plateau_window}")
        for name in ("window_fraction", "window_limit", "loss_fraction"):
            if not 0 < getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)}")


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
    # Steps too large for the loss surface: smaller ones, or Adam's per-weight step sizes.
    "oscillating": ("Oscillating loss", Severity.WARNING, ("lower_lr", "adam", "clip_grad")),
    "update_ratio": ("Uneven update sizes", Severity.WARNING, ("adam", "batchnorm", "he_init")),
    # Steps too small: larger ones, or Adam, which scales each weight's step to its gradient.
    "slow_convergence": ("Slow convergence", Severity.INFO, ("raise_lr", "adam")),
    "plateau": ("Loss plateau", Severity.INFO, ("adam", "raise_lr")),
}


@dataclass(frozen=True)
class Finding:
    """One diagnosed problem and what to do about it.

    Attributes
    ----------
    kind : str
        One of :data:`KINDS`: ``"non_finite"``, ``"exploding"``, ``"vanishing"``,
        ``"dead_units"``, ``"saturation"``, ``"oscillating"``, ``"update_ratio"``,
        ``"slow_convergence"``, ``"plateau"``.
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
