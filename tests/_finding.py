"""A panel with a finding to share: a vanishing baseline and its fix, trained headless.

Shared by the report and snapshot tests (and the offline browser test): no Jupyter server;
ipywidgets' dummy comm gives the widgets their state.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

import gradwidget as gw

STEPS = 60
FIXES = ["relu", "he_init"]


def trained_panel() -> gw.GradPanel:
    """A 6-layer sigmoid MLP on digits: the baseline run, then a run with ReLU + He init."""
    # Seeded: this net's first-layer norm sits near the vanishing rule's bar (1e-4); seed 1
    # puts it at about 8e-5, so the baseline always has its finding.
    torch.manual_seed(1)
    model = gw.models.deep_mlp(depth=6, activation="sigmoid")
    panel = gw.GradPanel(model, gw.datasets.digits(), steps=STEPS)
    panel.train()
    assert panel.wait(timeout=60)
    panel.retrain(FIXES)
    assert panel.wait(timeout=60)
    return panel


@contextmanager
def own_loop_panel() -> Iterator[gw.GradPanel]:
    """An own-loop panel that watched three steps of a small ReLU MLP on spirals; closed after."""
    model = gw.models.deep_mlp(3, 16, "relu", in_features=2, out_features=3)
    data = gw.datasets.spirals(n=64)
    panel = gw.GradPanel(model)
    try:
        for _ in range(3):
            model.zero_grad()
            loss = F.cross_entropy(model(data.x_train), data.y_train)
            loss.backward()
            panel.capture(loss)
        yield panel
    finally:
        panel.close()


def widget_tree(root: gw.GradPanel) -> list:
    """Every widget reachable from ``root`` through its traits, depth first, each once."""
    from ipywidgets import Widget

    seen: dict[str, Widget] = {}

    def visit(value: object) -> None:
        if isinstance(value, Widget):
            if value.model_id in seen:
                return
            seen[value.model_id] = value
            for name in value.keys:
                visit(getattr(value, name))
        elif isinstance(value, list | tuple):
            for item in value:
                visit(item)
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)

    visit(root)
    return list(seen.values())
