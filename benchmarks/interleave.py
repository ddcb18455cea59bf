"""Interleaved timing: every configuration trains its own copy of a model, round by round.

In each round every configuration (the plain loop among them) runs one block of ``B`` steps, in
a freshly shuffled order, so drifts of clock speed, caches and background load hit all of them
alike. A configuration's ratio in a round is its block time over the plain block of the same
round; the reported figure is the median over rounds with its spread.

Configurations that sample every ``k > B`` steps are numbered so that each block starts with a
sampled step, then charged per ``k`` steps: ``(T + (k - B) * t_rest) / (k * t_plain)``, where
``t_rest`` is the mean unsampled step of the same block. Every copy starts from the same weights
and sees the same batches, so all copies follow the same trajectory.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from .monitors import Monitor, make_monitor
from .workloads import Workload, make_batches

__all__ = ["Contender", "Lane", "Timing", "interleave", "spread"]


@dataclass(frozen=True)
class Contender:
    """One configuration: ``kind`` None is the plain loop; ``interval`` is its sampling interval."""

    kind: str | None
    interval: int = 1

    @property
    def key(self) -> str:
        return "plain" if self.kind is None else f"{self.kind}@{self.interval}"


@dataclass(frozen=True)
class Timing:
    """Per-round ratios of one configuration against the plain loop."""

    contender: Contender
    ratios: tuple[float, ...]
    step_ms: float
    plain_step_ms: float
    amortized: bool
    extra: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, float]:
        """median, p25, p75, p10, p90 of the ratios."""
        return spread(self.ratios)


def spread(values: tuple[float, ...] | list[float]) -> dict[str, float]:
    """Median and percentiles of ``values`` as plain floats."""
    points = np.percentile(np.asarray(values, dtype=float), [50, 25, 75, 10, 90])
    return dict(zip(("median", "p25", "p75", "p10", "p90"), map(float, points), strict=True))


class Lane:
    """One model copy, its optimizer and its monitor."""

    def __init__(self, contender: Contender, workload: Workload, device: torch.device) -> None:
        torch.manual_seed(0)  # every lane starts from the same weights
        self.contender = contender
        self.model = workload.build().to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        kind = contender.kind
        self.monitor: Monitor | None = (
            None if kind is None else make_monitor(kind, self.model, contender.interval)
        )
        self.device = device
        self.first_s: list[float] = []
        self.block_s: list[float] = []

    def run_block(self, batches: list, first_batch: int, first_step: int, steps: int) -> None:
        """Time ``steps`` steps; the first one separately (it may be the sampled one)."""
        self._sync()
        start = time.perf_counter()
        first = 0.0
        for i in range(steps):
            self._step(batches[(first_batch + i) % len(batches)], first_step + i)
            if i == 0:
                self._sync()
                first = time.perf_counter() - start
        self._sync()
        self.first_s.append(first)
        self.block_s.append(time.perf_counter() - start)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], step: int) -> None:
        x, y = batch
        self.optimizer.zero_grad()
        if self.monitor is not None:
            self.monitor.begin(step)
        loss = F.cross_entropy(self.model(x), y)
        loss.backward()
        if self.monitor is not None:
            self.monitor.after_backward(loss)
        self.optimizer.step()

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def extra(self) -> dict[str, float]:
        recorder = getattr(self.monitor, "recorder", None)
        return {} if recorder is None else {"grad_every": float(recorder.grad_every)}

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.close()


def interleave(
    workload: Workload,
    contenders: list[Contender],
    rounds: int,
    device: torch.device,
    block: int | None = None,
    warmup_rounds: int = 1,
) -> list[Timing]:
    """Time every contender against the plain loop; one :class:`Timing` per contender.

    Parameters
    ----------
    workload : Workload
        The model and batch shape.
    contenders : list of Contender
        Configurations to time; the plain loop is added and is the reference.
    rounds : int
        Rounds kept for the statistics (after ``warmup_rounds`` discarded ones).
    device : torch.device
        Where the models train.
    block : int, optional
        Steps per block (at least 2); default ``workload.block``.
    """
    steps = block or workload.block
    plain = Contender(None)
    lanes = [Lane(c, workload, device) for c in [plain, *contenders]]
    batches = make_batches(workload, 8, device)
    order = random.Random(0)
    try:
        for r in range(warmup_rounds + rounds):
            order.shuffle(lanes)
            for lane in lanes:
                # A lane sampling more rarely than once a block gets one sampled step per block.
                first_step = r * max(lane.contender.interval, steps)
                lane.run_block(batches, r * steps, first_step, steps)
        return _timings(lanes, plain, steps, warmup_rounds)
    finally:
        for lane in lanes:
            lane.close()


def _timings(lanes: list[Lane], plain: Contender, steps: int, skip: int) -> list[Timing]:
    ref = next(lane for lane in lanes if lane.contender == plain)
    plain_block = np.asarray(ref.block_s[skip:])
    plain_step_ms = float(np.median(plain_block)) / steps * 1e3
    timings = []
    for lane in lanes:
        if lane is ref:
            continue
        k = lane.contender.interval
        block_s, first_s = np.asarray(lane.block_s[skip:]), np.asarray(lane.first_s[skip:])
        amortized = k > steps
        if amortized:
            rest = (block_s - first_s) / (steps - 1)
            per_step = (block_s + (k - steps) * rest) / k
        else:
            per_step = block_s / steps
        ratios = per_step / (plain_block / steps)
        step_ms = float(np.median(per_step)) * 1e3
        timings.append(
            Timing(
                lane.contender,
                tuple(map(float, ratios)),
                step_ms,
                plain_step_ms,
                amortized,
                lane.extra(),
            )
        )
    return timings
