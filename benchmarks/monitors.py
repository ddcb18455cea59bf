"""Ways of watching gradients during training, each behind the same three calls.

Besides gradwidget's :class:`~gradwidget.Recorder`, these re-implement what popular tools do,
written from their documented behaviour (no code copied), so that all run in one process:

* ``item_loop``: one ``p.grad.norm().item()`` per parameter (Cockpit's ``GradNorm`` quantity,
  the ``plot_grad_flow`` recipe).
* ``lightning``: Lightning's ``grad_norm`` utility: a norm tensor per parameter, then a total
  norm from ``torch.tensor`` of that list (which reads every element back to the host).
* ``wandb``: ``wandb.watch(model, log="gradients", log_freq=k)``: a tensor hook on every
  parameter; on logged steps a clone of the gradient, its min and max as Python floats, and a
  64-bin ``histc`` copied to the host as lists.
* ``floor``: one read of every gradient byte and one host transfer: no monitor can do less.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import nn

__all__ = ["MONITORS", "Monitor", "Recording", "make_monitor"]

_WANDB_BINS = 64


class Monitor(Protocol):
    """What the benchmark loop calls around one training step."""

    def begin(self, step: int) -> None:
        """Called before the forward pass of step ``step``."""

    def after_backward(self, loss: torch.Tensor) -> None:
        """Called after ``loss.backward()`` and before ``optimizer.step()``."""

    def close(self) -> None:
        """Remove every hook."""


class _Sampled:
    """Base for monitors that do their work on every ``every``-th step."""

    def __init__(self, model: nn.Module, every: int) -> None:
        self.named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.every = every
        self.due = False
        self.sink: object = None  # keeps results alive, as a logger would

    def begin(self, step: int) -> None:
        self.due = step % self.every == 0

    def after_backward(self, loss: torch.Tensor) -> None:
        if self.due:
            self.sink = self.read()

    def read(self) -> object:
        raise NotImplementedError

    def close(self) -> None:
        self.sink = None

    def _grads(self) -> list[torch.Tensor]:
        return [p.grad for _, p in self.named if p.grad is not None]


class ItemLoop(_Sampled):
    """``[p.grad.norm().item() for p in params]``: one host round trip per parameter."""

    def read(self) -> object:
        return [g.norm().item() for g in self._grads()]


class LightningGradNorm(_Sampled):
    """Per-parameter 2-norms keyed by name, plus their total from a tensor built of the list."""

    def read(self) -> object:
        norms = {
            f"grad_2.0_norm/{name}": p.grad.norm(2) for name, p in self.named if p.grad is not None
        }
        norms["grad_2.0_norm_total"] = torch.tensor(list(norms.values())).norm(2)
        return norms


class Floor(_Sampled):
    """One fused read of every gradient byte (concatenate, sum) and one host transfer."""

    def read(self) -> object:
        return torch.cat([g.reshape(-1) for g in self._grads()]).sum().item()


class WandbGradients(_Sampled):
    """A tensor hook per parameter; on logged steps a 64-bin histogram of each gradient."""

    def __init__(self, model: nn.Module, every: int) -> None:
        super().__init__(model, every)
        self.logged: dict[str, tuple[list[float], list[float]]] = {}
        self.handles = [p.register_hook(self._hook_for(name)) for name, p in self.named]

    def _hook_for(self, name: str) -> Callable[[torch.Tensor], None]:
        def hook(grad: torch.Tensor) -> None:
            # The hook runs on every backward; the interval check is all an unlogged step pays.
            if self.due:
                self.logged[name] = _histogram(grad)

        return hook

    def read(self) -> object:
        return self.logged

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()
        super().close()


def _histogram(grad: torch.Tensor) -> tuple[list[float], list[float]]:
    flat = grad.detach().clone().reshape(-1)
    low, high = flat.min().item(), flat.max().item()
    counts = flat.histc(bins=_WANDB_BINS, min=low, max=high)
    edges = torch.linspace(low, high, _WANDB_BINS + 1)
    return counts.cpu().tolist(), edges.tolist()


class Recording:
    """gradwidget's :class:`~gradwidget.Recorder`: ``capture(loss)`` after every backward."""

    def __init__(self, model: nn.Module, act_every: int | None, budget: bool) -> None:
        from gradwidget import Recorder  # imported late: the peers' benchmarks need no gradwidget

        options = {} if budget else {"budget": None}  # the default budget, or none
        self.recorder = Recorder(model, act_every=act_every, **options)

    def begin(self, step: int) -> None:
        """The recorder keeps its own step count and sampling phase."""

    def after_backward(self, loss: torch.Tensor) -> None:
        self.recorder.capture(loss)

    def close(self) -> None:
        self.recorder.close()


MONITORS: dict[str, type[_Sampled]] = {
    "item_loop": ItemLoop,
    "lightning": LightningGradNorm,
    "wandb": WandbGradients,
    "floor": Floor,
}


def make_monitor(kind: str, model: nn.Module, interval: int) -> Monitor:
    """A monitor of ``kind``: a key of :data:`MONITORS`, ``gw_default`` or ``gw_full``.

    For gradwidget, ``interval`` is ``act_every``; ``gw_default`` keeps the time budget
    (adaptive gradient interval) and ``gw_full`` disables it.
    """
    if kind == "gw_default":
        return Recording(model, act_every=interval, budget=True)
    if kind == "gw_full":
        return Recording(model, act_every=interval, budget=False)
    return MONITORS[kind](model, interval)
