"""Training-step overhead of gradwidget and of the peers' ways, on each workload."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .interleave import Contender, Timing, interleave
from .workloads import Workload

__all__ = ["LABELS", "TARGETS", "OverheadRow", "contenders_for", "measure_overhead"]

LABELS = {
    "gw_default": "gradwidget Recorder, defaults (2 % budget)",
    "gw_full": "gradwidget Recorder, no budget",
    "item_loop": "per-parameter .item() loop (Cockpit GradNorm, plot_grad_flow)",
    "lightning": "Lightning grad_norm",
    "wandb": "W&B watch(log='gradients')",
    "floor": "floor: one read of every gradient byte",
}
# (kind, interval) -> largest acceptable median ratio to a plain step.
TARGETS = {("gw_default", 10): 1.03, ("gw_full", 1): 1.25}
_REQUIRED = [
    Contender("gw_default", 10),
    Contender("gw_full", 1),
    Contender("item_loop", 1),
    Contender("lightning", 1),
    Contender("wandb", 1),
    Contender("wandb", 100),
    Contender("floor", 1),
]


@dataclass(frozen=True)
class OverheadRow:
    """One configuration on one workload: ratio to a plain step and its spread."""

    model: str
    kind: str
    interval: int
    median: float
    p25: float
    p75: float
    p10: float
    p90: float
    step_ms: float
    plain_step_ms: float
    amortized: bool
    target: float | None
    grad_every: float | None
    act_interval: float | None = None
    transfers_per_100: float | None = None  # device-to-host transfers per 100 steps

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.median <= self.target


def contenders_for(sweep: tuple[int, ...]) -> list[Contender]:
    """The required configurations plus every kind at each interval of ``sweep``.

    The budgeted Recorder is left out of the sweep: its budget, not ``act_every``, sets its
    intervals (``act_every`` is only their floor), so other intervals time the same thing.
    """
    swept = [Contender(kind, k) for kind in LABELS for k in sweep if kind != "gw_default"]
    return list(dict.fromkeys([*_REQUIRED, *swept]))  # keep order, drop repeats


def measure_overhead(
    workload: Workload,
    sweep: tuple[int, ...],
    rounds: int,
    device: torch.device,
    block: int | None = None,
    settle_samples: int = 25,
    clock: Callable[[], float] = time.perf_counter,
) -> list[OverheadRow]:
    """Time every configuration on ``workload``, interleaved with the plain loop."""
    contenders = contenders_for(sweep)
    timings = interleave(
        workload, contenders, rounds, device, block, settle_samples=settle_samples, clock=clock
    )
    return [_row(workload, t) for t in timings]


def _row(workload: Workload, timing: Timing) -> OverheadRow:
    c = timing.contender
    return OverheadRow(
        model=workload.name,
        kind=str(c.kind),
        interval=c.interval,
        **timing.summary(),
        step_ms=timing.step_ms,
        plain_step_ms=timing.plain_step_ms,
        amortized=timing.amortized,
        target=TARGETS.get((str(c.kind), c.interval)),
        grad_every=timing.extra.get("grad_every"),
        act_interval=timing.extra.get("act_interval"),
        transfers_per_100=timing.extra.get("transfers_per_100"),
    )
