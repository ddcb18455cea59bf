"""The chain-rule explorer: turn the knobs of a deep stack and see the gradient's product form.

``explore()`` shows controls (depth, activation, initialisation, weight scale, normalisation,
residual connections, width), three charts of the current :class:`ChainProfile`, the profile
in one sentence, and a "Train this" button that opens a :class:`GradPanel` on the same stack.
A change is measured and drawn on a background thread, for the newest setting only and at most
ten times a second, so a dragged slider never builds a backlog.
"""

from __future__ import annotations

import html
import threading
import time
from collections.abc import Callable
from dataclasses import fields
from typing import Any

import ipywidgets as w

from .._chain import ACTIVATIONS, INITS, NORMS
from ..explorer import MAX_DEPTH, ChainProfile, ChainSetting, build_stack, chain_profile, digits
from ._explorer_charts import ChainCharts
from ._widgets import close_tree
from .panel import GradPanel

__all__ = ["Explorer", "explore"]

_MIN_INTERVAL_S = 0.1  # at most 10 redraws a second, the rate the browser keeps up with
_LABELS = {"weight_scale": "weight scale"}


class Explorer(w.VBox):
    """Controls, charts and a sentence for one :class:`~gradwidget.explorer.ChainSetting`.

    Parameters
    ----------
    setting : ChainSetting
        Where the knobs start.

    Attributes
    ----------
    controls : dict of str to ipywidgets.Widget
        ``depth``, ``activation``, ``init``, ``weight_scale``, ``norm``, ``residual``,
        ``width``: set their ``value`` to move a knob from code.
    profile : ChainProfile
        The profile drawn now (call :meth:`wait` after changing a control from code).
    panel : GradPanel or None
        The panel "Train this" opened last.
    """

    def __init__(self, setting: ChainSetting) -> None:
        self.controls = _controls(setting)
        self.charts = ChainCharts()
        self.sentence = w.HTML()
        self.sentence.add_class("gw-explorer-sentence")
        self.train_button = w.Button(
            description="Train this", icon="play", tooltip="Open a GradPanel on this stack"
        )
        self.train_button.add_class("gw-explorer-train")
        self.train_button.on_click(lambda _: self.train_this())
        self.panel: GradPanel | None = None
        self._panel_box = w.VBox()
        self._updates = _Newest(self._show, _MIN_INTERVAL_S)
        self._show(setting)
        for control in self.controls.values():
            control.observe(lambda _: self._updates.submit(self.setting()), names="value")
        super().__init__([*_control_rows(self.controls), self.sentence, _chart_grid(self.charts),
                          self.train_button, self._panel_box])  # fmt: skip
        self.add_class("gw-explorer")

    def setting(self) -> ChainSetting:
        """The setting the controls show now."""
        return ChainSetting(**{name: c.value for name, c in self.controls.items()})

    def wait(self, timeout: float | None = 30.0) -> bool:
        """Block until the newest control change is drawn; False if ``timeout`` passed first."""
        return self._updates.wait(timeout)

    def train_this(self) -> GradPanel:
        """Open a :class:`GradPanel` that trains the stack of the controls' setting on the
        digits, below the charts (replacing one opened before); return it."""
        if self.panel is not None:
            self.panel.close()
        self.panel = GradPanel(build_stack(self.setting()), digits())
        self._panel_box.children = (self.panel,)
        return self.panel

    def close(self) -> None:
        """Close the panel "Train this" opened, the charts and every control."""
        if self.panel is not None:
            self.panel.close()
        close_tree(self)

    def _show(self, setting: ChainSetting) -> None:
        try:
            profile = chain_profile(setting)
            self.charts.draw(profile)
        except Exception as exc:  # a knob combination we did not foresee: say so, keep going
            self.sentence.value = f"<b>Could not measure this setting:</b> {html.escape(str(exc))}"
            return
        self.profile: ChainProfile = profile
        self.sentence.value = f"<b>{html.escape(profile.sentence, quote=False)}</b>"


def explore(
    depth: int = 10,
    activation: str = "sigmoid",
    init: str = "default",
    norm: str = "none",
    residual: bool = False,
    width: int = 64,
    weight_scale: float = 1.0,
) -> Explorer:
    """The chain-rule explorer: how much of the output's gradient reaches each layer.

    Parameters
    ----------
    depth : int
        Linear layers, 1 to 100.
    activation : {"sigmoid", "tanh", "relu", "leaky_relu", "gelu"}
    init : {"default", "he", "xavier"}
    norm : {"none", "batchnorm", "layernorm"}
    residual : bool
        Skip connections ``x + f(x)`` around the hidden layers.
    width : int
        Features of the hidden layers, 8 to 256.
    weight_scale : float
        Factor on every initial weight, 0.1 to 4.

    Returns
    -------
    Explorer
        Display it in a notebook cell; no training happens until "Train this".
    """
    setting = ChainSetting(depth, activation, init, weight_scale, norm, residual, width)
    return Explorer(setting)


def _controls(setting: ChainSetting) -> dict[str, w.ValueWidget]:
    sliders = {"continuous_update": True, "layout": w.Layout(width="300px")}
    menu = {"layout": w.Layout(width="200px")}
    made = {
        "depth": w.IntSlider(setting.depth, min=1, max=MAX_DEPTH, **sliders),
        "activation": w.Dropdown(options=list(ACTIVATIONS), value=setting.activation, **menu),
        "init": w.Dropdown(options=list(INITS), value=setting.init, **menu),
        "weight_scale": w.FloatLogSlider(
            setting.weight_scale, base=10, min=-1, max=0.6, step=0.02, readout_format=".2f",
            **sliders,
        ),
        "norm": w.Dropdown(options=list(NORMS), value=setting.norm, **menu),
        "residual": w.Checkbox(setting.residual, indent=False),
        "width": w.IntSlider(setting.width, min=8, max=256, step=8, **sliders),
    }  # fmt: skip
    for name, control in made.items():
        control.description = _LABELS.get(name, name)
        control.style.description_width = "initial"
        control.add_class(f"gw-explorer-{name.replace('_', '-')}")
    # The same order as ChainSetting's fields, which setting() passes by name.
    order = [f.name for f in fields(ChainSetting)]
    return dict(sorted(made.items(), key=lambda item: order.index(item[0])))


def _control_rows(controls: dict[str, w.ValueWidget]) -> list[w.HBox]:
    rows = (("depth", "width", "weight_scale"), ("activation", "init", "norm", "residual"))
    gap = w.Layout(grid_gap="16px", flex_flow="row wrap", align_items="center")
    return [w.HBox([controls[name] for name in row], layout=gap) for row in rows]


def _chart_grid(charts: ChainCharts) -> w.GridBox:
    columns = w.Layout(grid_template_columns="repeat(auto-fit, minmax(300px, 1fr))", width="100%")
    return w.GridBox(charts.boxes, layout=columns)


class _Newest:
    """Call ``work(item)`` on a daemon thread for the newest item submitted, at most once per
    ``min_interval`` seconds; items submitted meanwhile replace each other, unseen."""

    def __init__(self, work: Callable[[Any], None], min_interval: float) -> None:
        self._work, self._min_interval = work, min_interval
        self._lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._pending: Any = None
        self._thread: threading.Thread | None = None
        self._last = -float("inf")

    def submit(self, item: Any) -> None:
        with self._lock:
            self._pending = item
            self._idle.clear()
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="gradwidget-explorer", daemon=True
                )
                self._thread.start()

    def wait(self, timeout: float | None) -> bool:
        return self._idle.wait(timeout)

    def _loop(self) -> None:
        while True:
            time.sleep(max(0.0, self._last + self._min_interval - time.monotonic()))
            with self._lock:
                item, self._pending = self._pending, None
                if item is None:
                    self._thread = None
                    self._idle.set()
                    return
            try:
                self._work(item)
            finally:
                self._last = time.monotonic()
                with self._lock:  # drawn, and nothing newer: waiters may go on
                    if self._pending is None:
                        self._idle.set()
