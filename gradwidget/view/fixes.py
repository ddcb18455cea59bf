"""The fix bar: one toggle per registered remedy, grouped by what it changes, and "Retrain"."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import ipywidgets as w
from torch import nn

from .. import remedies
from ..errors import RemedyNotApplicable
from ..remedies import REGISTRY, REMEDIES, Group
from ..train.settings import TrainConfig

__all__ = ["FixBar"]

_GROUP_TITLES = {
    Group.ACTIVATION: "Activation",
    Group.INITIALISATION: "Init",
    Group.NORMALISATION: "Norm",
    Group.ARCHITECTURE: "Architecture",
    Group.TRAINING: "Training",
}


class FixBar(w.VBox):
    """A toggle button per remedy, in one box per group, and a retrain button.

    Within an exclusive group (one activation, one init, one norm) selecting a remedy
    unselects the others.

    Parameters
    ----------
    model : torch.nn.Module
        The initial model; a remedy that cannot change it is disabled, its tooltip says why.
    on_change : callable
        Called with the selected remedy names (in registry order) after each toggle.
    on_retrain : callable
        Called with the selected remedy names when "Retrain with fixes" is clicked.
    settings : TrainConfig or None
        The runs' settings: training remedies change them (and may not apply to them).
    on_autofix : callable
        Called when "Find a fix" (css ``gw-autofix``) is clicked: the automatic repair.
    """

    def __init__(
        self,
        model: nn.Module,
        on_change: Callable[[tuple[str, ...]], None],
        on_retrain: Callable[[tuple[str, ...]], None],
        settings: TrainConfig | None = None,
        on_autofix: Callable[[], object] = lambda: None,
    ) -> None:
        self.model, self.settings = model, settings or TrainConfig()
        self.on_change, self.on_retrain = on_change, on_retrain
        self.selected: tuple[str, ...] = ()
        self.suggested: frozenset[str] = frozenset()
        self._applicable: set[str] = set()  # filled by the buttons' checks, once
        checked = remedies.check_all(model, [r.name for r in REGISTRY], self.settings)
        self.buttons = {name: self._fix_button(name, outcome) for name, outcome in checked.items()}
        self.retrain_button = w.Button(
            description="Retrain with fixes",
            icon="repeat",
            layout=w.Layout(width="auto", flex="0 0 auto", margin="0 0 2px 0"),
        )  # the default width (or a squeezed flex item) cuts the label to "Retrain with fi..."
        self.retrain_button.add_class("gw-retrain")
        self.retrain_button.on_click(lambda _: self.on_retrain(self.selected))
        self.autofix_button = w.Button(
            description="Find a fix",
            icon="magic",
            button_style="success",
            tooltip="Try the suggested fixes in short seeded trials; retrain the best.",
            layout=w.Layout(width="auto", flex="0 0 auto", margin="0 0 2px 4px"),
        )
        self.autofix_button.add_class("gw-autofix")
        self.autofix_button.on_click(lambda _: on_autofix())
        self._retrain_reason: str | None = None
        self._restyle()
        caption = w.HTML(
            "<b>Fixes</b> (toggle, then retrain; highlighted: what the diagnosis suggests):"
        )
        groups = w.HBox(
            [
                *(self._group_box(group) for group in Group),
                self.retrain_button,
                self.autofix_button,
            ],
            layout=w.Layout(flex_flow="row wrap", align_items="flex-end"),
        )  # wraps on narrow screens; the retrain button follows the last group
        super().__init__([caption, groups])
        self.add_class("gw-fixes")

    def _group_box(self, group: Group) -> w.VBox:
        title = w.HTML(f"<small>{_GROUP_TITLES[group]}</small>")
        buttons = [self.buttons[r.name] for r in REGISTRY if r.group is group]
        box = w.VBox([title, w.HBox(buttons)], layout=w.Layout(margin="0 12px 0 0"))
        box.add_class(f"gw-fix-group-{group.value}")
        return box

    def _fix_button(self, name: str, checked: remedies.Change | RemedyNotApplicable) -> w.Button:
        button = w.Button(description=remedies.LABELS[name], layout=w.Layout(width="auto"))
        button.add_class(f"gw-fix-{name}")
        if isinstance(checked, RemedyNotApplicable):
            button.disabled, button.tooltip = True, str(checked)
        else:
            button.tooltip = checked.summary
            self._applicable.add(name)
        button.on_click(lambda _: self.toggle(name))
        return button

    def toggle(self, name: str) -> None:
        """Select ``name`` if it was not selected (dropping its rivals), else unselect it."""
        group = REMEDIES[name].group
        if name in self.selected:
            chosen = set(self.selected) - {name}
        else:
            rivals = {n for n in self.selected if group.exclusive and REMEDIES[n].group is group}
            chosen = (set(self.selected) - rivals) | {name}
        self.selected = tuple(r.name for r in REGISTRY if r.name in chosen)
        self._restyle()
        self.on_change(self.selected)

    def suggest(self, names: Iterable[str]) -> None:
        """Highlight the remedies the diagnosis recommends (a stand-in where one cannot apply)."""
        # A check copies the model (14 ms for the tutorial's): the buttons made them all.
        suggested = frozenset(remedies.suggest(names, self.model, applicable=self._applicable))
        if suggested != self.suggested:
            self.suggested = suggested
            self._restyle()

    def allow_retrain(self, reason: str | None) -> None:
        """Enable retraining and Find a fix, or disable both with ``reason`` as the tooltip."""
        self._retrain_reason = reason
        self._restyle()
        with self.autofix_button.hold_sync():
            self.autofix_button.disabled = reason is not None
            self.autofix_button.tooltip = reason or (
                "Try the suggested fixes in short seeded trials; retrain the best."
            )

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
