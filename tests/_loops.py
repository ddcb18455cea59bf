"""The plain training loop that recorder tests run: the order a user's own loop has."""

from __future__ import annotations

import torch
from torch import nn

import gradwidget as gw


def train_steps(
    model: nn.Module,
    rec: gw.Recorder,
    n: int,
    opt: torch.optim.Optimizer | None = None,
    data: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> None:
    """``n`` SGD steps of cross-entropy on ``data`` (default: one random batch for ``model``),
    capturing each step after backward and before the optimizer step."""
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.1)
    if data is None:
        first = next(m for m in model.modules() if isinstance(m, nn.Linear))
        last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
        data = torch.randn(32, first.in_features), torch.randint(0, last.out_features, (32,))
    x, y = data
    for _ in range(n):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        rec.capture(loss)
        opt.step()
