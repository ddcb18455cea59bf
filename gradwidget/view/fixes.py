"""Fix buttons (ReLU, He init, BatchNorm: toggles, combinable) and "Retrain with fixes"."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import ipywidgets as w
from torch import nn

from .. import remedies
from ..errors import RemedyNotApplicable

__all__ = ["FixBar"]


class FixBar(w.HBox):
    """A toggle button per remedy and a retrain button.

    Parameters
    ----------
    model : torch.nn.Module
        The initial model; a remedy that cannot change it is disabled, its tooltip says why.
    on_change : callable
        Called with the selected remedy names (in ``REMEDY_NAMES`` order) after each toggle.
    on_retrain : callable
        Called with the selected remedy names when "Retrain with fixes" is clicked.
    """

    def __init__(
        self,
        model: nn.Module,
        on_change: Callable[[tuple[str, ...]], None],
        on_retrain: Callable[[tuple[str, ...]], None],
    ) -> None:
        self.on_change, self.on_retrain = on_change, on_retrain
        self.selected: tuple[str, ...] = ()
        self.suggested: frozenset[str] = frozenset()
        self.buttons = {name: self._fix_button(model, name) for name in remedies.REMEDY_NAMES}
        self.retrain_button = w.Button(
            description="Retrain with fixes", icon="repeat", layout=w.Layout(width="auto")
        )  # the default width cuts the label to "Retrain with fi..."
        self.retrain_button.add_class("gw-retrain")
        self.retrain_button.on_click(lambda _: self.on_retrain(self.selected))
        self._retrain_reason: str | None = None
        self._restyle()
        caption = w.HTML("<b>Fixes</b> (toggle, then retrain):")
        super().__init__([caption, *self.buttons.values(), self.retrain_button])

    def _fix_button(self, model: nn.Module, name: str) -> w.Button:
        button = w.Button(description=remedies.LABELS[name])
        button.add_class(f"gw-fix-{name}")
        try:
            button.tooltip = remedies.check(model, name).summary
        except RemedyNotApplicable as why:
            button.disabled, button.tooltip = True, str(why)
        button.on_click(lambda _: self.toggle(name))
        return button

    def toggle(self, name: str) -> None:
        """Select ``name`` if it was not selected, else unselect it."""
        chosen = set(self.selected) ^ {name}
        self.selected = tuple(n for n in remedies.REMEDY_NAMES if n in chosen)
        self._restyle()
        self.on_change(self.selected)

    def suggest(self, names: Iterable[str]) -> None:
        """Highlight the remedies the diagnosis recommends."""
        suggested = frozenset(names)
        if suggested != self.suggested:
            self.suggested = suggested
            self._restyle()

    def allow_retrain(self, reason: str | None) -> None:
        """Enable retraining, or disable it with ``reason`` as the tooltip."""
        self._retrain_reason = reason
        self._restyle()

    def _restyle(self) -> None:
        for name, button in self.buttons.items():
            on = name in self.selected
            with button.hold_sync():
                button.icon = "check" if on else ""
                button.button_style = (
                    "info" if on else ("warning" if name in self.suggested else "")
                )
        button = self.retrain_button
        blocked = self._retrain_reason or (None if self.selected else "Select at least one fix.")
        with button.hold_sync():
            button.disabled = blocked is not None
            button.tooltip = blocked or "Retrain from the same initial weights and data order."
