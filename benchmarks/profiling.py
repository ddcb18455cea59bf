"""Where the time of a gradwidget-monitored step goes.

Two views for whoever makes the Recorder faster: the step time by sampling phase
(``step % act_every``) next to the plain step, with the time spent inside ``capture``; and
cProfile's heaviest gradwidget functions by cumulative time.
"""

from __future__ import annotations

import cProfile
import io
import pstats
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .workloads import Workload, make_batches

__all__ = ["phase_breakdown", "profile_recorder"]


def _train_step(model: Any, optimizer: Any, batch: Any, recorder: Any) -> tuple[float, float]:
    """One step; returns (step seconds, seconds inside ``recorder.capture``)."""
    x, y = batch
    start = time.perf_counter()
    optimizer.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    before = time.perf_counter()
    if recorder is not None:
        recorder.capture(loss)
    after = time.perf_counter()
    optimizer.step()
    return time.perf_counter() - start, after - before


def phase_breakdown(
    workload: Workload, act_every: int, budget: float | None, rounds: int, device: torch.device
) -> dict[str, Any]:
    """Median step and capture milliseconds per phase, plain and recorded blocks interleaved.

    Each round runs ``2 * act_every`` plain steps, then as many recorded ones.
    """
    from gradwidget import Recorder

    batches = make_batches(workload, 8, device)
    lanes = []
    for recorded in (False, True):
        torch.manual_seed(0)
        model = workload.build().to(device)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
        recorder = Recorder(model, act_every=act_every, budget=budget) if recorded else None
        lanes.append((model, optimizer, recorder, []))
    for r in range(rounds + 1):  # round 0 warms up
        for model, optimizer, recorder, log in lanes:
            for i in range(2 * act_every):
                phase = i % act_every if recorder is None else recorder.step % act_every
                step_s, capture_s = _train_step(model, optimizer, batches[i % 8], recorder)
                if r:
                    log.append((phase, step_s, capture_s))
    lanes[1][2].close()
    return _by_phase(lanes[0][3], lanes[1][3], act_every, lanes[1][2].grad_every)


def _by_phase(plain: list, recorded: list, act_every: int, grad_every: int) -> dict[str, Any]:
    p, r = np.asarray(plain), np.asarray(recorded)
    rows = []
    for phase in range(act_every):
        mine = r[r[:, 0] == phase]
        rows.append(
            {
                "phase": phase,
                "plain_ms": float(np.median(p[p[:, 0] == phase, 1])) * 1e3,
                "recorded_ms": float(np.median(mine[:, 1])) * 1e3,
                "capture_ms": float(np.median(mine[:, 2])) * 1e3,
            }
        )
    ratio = float(r[:, 1].sum() / p[:, 1].sum())
    return {
        "act_every": act_every,
        "grad_every": grad_every,
        "ratio_of_sums": ratio,
        "phases": rows,
    }


def profile_recorder(
    workload: Workload, act_every: int, budget: float | None, steps: int, device: torch.device
) -> str:
    """cProfile's gradwidget functions by cumulative time over ``steps`` recorded steps."""
    from gradwidget import Recorder

    torch.manual_seed(0)
    model = workload.build().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    batches = make_batches(workload, 8, device)
    profiler = cProfile.Profile()
    with Recorder(model, act_every=act_every, budget=budget) as recorder:
        for i in range(10 + steps):  # the first 10 warm up, and set the adaptive interval
            if i == 10:
                profiler.enable()
            _train_step(model, optimizer, batches[i % 8], recorder)
        profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumtime").print_stats("gradwidget", 15)
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(line for line in lines[start:] if line.strip())
