"""What a ``torch.amp.GradScaler`` says about the gradients, read without a host sync.

Under AMP the loss is multiplied by the scaler's scale (2**16 by default) before ``backward``,
so every gradient carries that factor until ``scaler.unscale_(optimizer)`` divides it out,
which the user may or may not have done before ``capture``. The scaler keeps, per optimizer,
a stage (``READY``, ``UNSCALED``, ``STEPPED``) and its scale as a 0-d tensor on the device;
both are read here as they are, the scale never copied to the host.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.amp.grad_scaler import GradScaler, OptState

from ..errors import GradWidgetError

__all__ = ["AmpState", "read_scaler"]


@dataclass(frozen=True)
class AmpState:
    """The scaler's scale and whether the gradients still carry it.

    Attributes
    ----------
    scale : torch.Tensor
        0-d float32 on the scaler's device: the scale of this step's backward.
    scaled : bool
        True when no optimizer has been unscaled this step, so gradients are ``scale`` times
        their true value.
    """

    scale: torch.Tensor
    scaled: bool

    def unscale_squares(self, squares: torch.Tensor) -> torch.Tensor:
        """Squared gradient norms without the scale (on the device; no host sync)."""
        return squares / self.scale.square() if self.scaled else squares


def read_scaler(scaler: Any) -> AmpState | None:
    """The state of ``scaler`` for this step; None when there is nothing to undo.

    Raises
    ------
    GradWidgetError
        If ``scaler`` is not a ``torch.amp.GradScaler``.
    """
    if scaler is None:
        return None
    if not isinstance(scaler, GradScaler):
        raise GradWidgetError(
            f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}. Pass the "
            "scaler you call scaler.scale(loss) with, or leave scaler out without AMP."
        )
    if not scaler.is_enabled():
        return None
    scale = scaler._scale  # None until scaler.scale(loss) first ran: nothing scaled yet
    if scale is None:
        return None
    # unscale_ marks its optimizer UNSCALED until update(); the recorder does not know which
    # optimizer owns which parameter, so one unscaled optimizer means "already unscaled".
    states = scaler._per_optimizer_states.values()
    unscaled = any(state["stage"] is OptState.UNSCALED for state in states)
    return AmpState(scale, not unscaled)
