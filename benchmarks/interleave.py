"""Interleaved timing: every configuration trains its own copy of a model, block by block.

In each round the configurations run one block each, in a freshly shuffled order, with a block
of the plain loop before and after every one: ``P C1 P C2 P ... Cn P``. A configuration's ratio
in a round is its time per step over the mean time per step of the two plain blocks around it,
so a burst of load from elsewhere hits both sides of the ratio. The reported figure is the
median over rounds with its spread.

Configurations that sample every ``k`` steps with ``k`` longer than a block are numbered so that
each block starts with a sampled step, then charged per ``k`` steps:
``(T + (k - n) * t_rest) / k`` per step, where ``t_rest`` is the mean unsampled step of the same
block. The Recorder keeps its own sampling phase, so its blocks are ``k`` steps long instead.
Every copy starts from the same weights and sees the same batches.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
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

    def __init__(
        self,
        contender: Contender,
        workload: Workload,
        device: torch.device,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        torch.manual_seed(0)  # every lane starts from the same weights
        self.clock = clock
        self.contender = contender
        self.model = workload.build().to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01)
        kind = contender.kind
        self.monitor: Monitor | None = (
            None if kind is None else make_monitor(kind, self.model, contender.interval)
        )
        self.device = device
        self.blocks: list[tuple[float, float, int]] = []  # (first step s, block s, steps)
        self.reference: list[float] = []  # plain seconds per step around each block

    def block_steps(self, block: int) -> int:
        """Steps per block: a Recorder's blocks span at least one of its sampling intervals.

        The budget moves the Recorder's intervals, so a block as long as the longest one in use
        holds one activation sample and its share of gradient captures: the ratio of every
        block is then that of the whole run, not of a lucky stretch between two samples.
        """
        recorder = getattr(self.monitor, "recorder", None)
        if recorder is None:
            return block
        return max(block, recorder.act_interval, recorder.grad_every)

    def settle(self, batches: list, steps: int) -> None:
        """Untimed steps first: the Recorder never thins its first samples (the diagnosis
        needs them) and measures its costs before it sets its intervals."""
        for i in range(steps):
            self._step(batches[i % len(batches)], i)

    def run_block(self, batches: list, first_batch: int, first_step: int, steps: int) -> float:
        """Time ``steps`` steps, the first one also alone; return seconds per step."""
        self._sync()
        start = self.clock()
        first = 0.0
        for i in range(steps):
            self._step(batches[(first_batch + i) % len(batches)], first_step + i)
            if i == 0:
                self._sync()
                first = self.clock() - start
        self._sync()
        total = self.clock() - start
        self.blocks.append((first, total, steps))
        return total / steps

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
        if recorder is None:
            return {}
        return {
            "grad_every": float(recorder.grad_every),
            "act_interval": float(recorder.act_interval),
            "transfers_per_100": 100 * recorder.transfers / max(recorder.step, 1),
        }

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
    settle_samples: int = 25,
    clock: Callable[[], float] = time.perf_counter,
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
    settle_samples : int
        Activation intervals a budgeted Recorder trains untimed first (its first 20 samples
        are never thinned, so they are not its steady state).
    clock : callable
        ``time.perf_counter`` (wall time), or ``time.thread_time``: CPU time of this thread,
        which leaves out the time the process waits while other processes run (with one torch
        thread on CPU every step runs in this thread).
    """
    steps = block or workload.block
    plain = Lane(Contender(None), workload, device, clock)
    lanes = [Lane(c, workload, device, clock) for c in contenders]
    batches = make_batches(workload, 8, device)
    order = random.Random(0)
    try:
        for lane in lanes:
            if lane.contender.kind == "gw_default":  # the budget's steady state is measured
                lane.settle(batches, settle_samples * lane.contender.interval + 50)
        for r in range(warmup_rounds + rounds):
            order.shuffle(lanes)
            before = plain.run_block(batches, r * steps, 0, steps)
            for lane in lanes:
                n = lane.block_steps(steps)
                # A lane sampling more rarely than once a block gets one sampled step per block.
                lane.run_block(batches, r * steps, r * max(lane.contender.interval, n), n)
                after = plain.run_block(batches, r * steps, 0, steps)
                lane.reference.append((before + after) / 2)
                before = after
        return _timings(lanes, warmup_rounds)
    finally:
        for lane in [plain, *lanes]:
            lane.close()


def _timings(lanes: list[Lane], skip: int) -> list[Timing]:
    timings = []
    for lane in lanes:
        first, total, n = (np.asarray(column) for column in zip(*lane.blocks[skip:], strict=True))
        reference = np.asarray(lane.reference[skip:])
        k = lane.contender.interval
        amortized = bool(np.any(k > n))
        if amortized:
            rest = (total - first) / (n - 1)
            per_step = (total + (k - n) * rest) / k
        else:
            per_step = total / n
        timings.append(
            Timing(
                lane.contender,
                tuple(map(float, per_step / reference)),
                float(np.median(per_step)) * 1e3,
                float(np.median(reference)) * 1e3,
                amortized,
                lane.extra(),
            )
        )
    return timings
