"""Memory: Python-heap growth of a History over many steps, and RSS over a long recorded run.

Run as a module (``python -m benchmarks.memory STEPS``) it does the long run in a fresh process
and prints JSON, so the peak RSS is not that of the models other benchmarks built earlier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gradwidget.models import deep_mlp

__all__ = ["HistoryGrowth", "RunMemory", "history_growth", "run_memory"]

_PER_STEP = ("grad_norm", "nonfinite")  # plus "loss": what the Recorder writes every step
_SAMPLED = ("act_mean", "act_std", "dead_frac", "saturated_frac", "weight_norm", "update_ratio")


@dataclass(frozen=True)
class HistoryGrowth:
    """Traced Python-heap bytes of one History at checkpoints (step, bytes)."""

    steps: int
    layers: int
    capacity: int
    checkpoints: tuple[tuple[int, int], ...]
    growth_after_full: int  # bytes gained between the first checkpoint past capacity and the end

    @property
    def flat(self) -> bool:
        return abs(self.growth_after_full) <= 64 * 1024


@dataclass(frozen=True)
class RunMemory:
    """Resident memory of a process training a small model under a Recorder."""

    steps: int
    rss_after_warmup_mb: float
    rss_end_mb: float
    peak_rss_mb: float


def history_growth(steps: int, layers: int = 50, capacity: int = 1024) -> HistoryGrowth:
    """Append ``steps`` Recorder-like steps to a History and trace its heap at checkpoints."""
    from gradwidget import History

    rows = np.random.default_rng(0).lognormal(size=(64, layers)).astype(np.float32)
    marks = sorted({int(steps * f) for f in (0.01, 0.1, 0.25, 0.5, 0.75, 1.0)} - {0})
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        history = History([f"layer{i}" for i in range(layers)], capacity)
        checkpoints = []
        for step in range(1, steps + 1):
            _append_step(history, step, rows[step % 64])
            if step == marks[len(checkpoints)]:
                checkpoints.append((step, tracemalloc.get_traced_memory()[0] - base))
    finally:
        tracemalloc.stop()
    # Sampled series get a point every 10th step: all series are full after 10 * capacity steps.
    full = [b for s, b in checkpoints if s > 10 * capacity] or [checkpoints[-1][1]]
    return HistoryGrowth(steps, layers, capacity, tuple(checkpoints), checkpoints[-1][1] - full[0])


def _append_step(history: object, step: int, values: np.ndarray) -> None:
    history.append("loss", step, float(values[0]))
    for name in _PER_STEP:
        history.append(name, step, values)
    if step % 10 == 0:  # the Recorder's default act_every
        for name in _SAMPLED:
            history.append(name, step, values)


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    # VmHWM starts afresh in a new process image; getrusage's ru_maxrss keeps the parent's peak.
    with open("/proc/self/status") as status:
        line = next(ln for ln in status if ln.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def _long_run(steps: int) -> RunMemory:
    from gradwidget import Recorder

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = deep_mlp(6, 64, "tanh")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(32, 64), torch.randint(10, (32,))
    warm = rss = 0.0
    with Recorder(model) as recorder:
        for step in range(steps):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            recorder.capture(loss)
            optimizer.step()
            if step == steps // 10:
                warm = _rss_mb()
        rss = _rss_mb()
    return RunMemory(steps, warm, rss, _peak_rss_mb())


def run_memory(steps: int) -> RunMemory:
    """RSS of a ``steps``-step recorded run, measured in a fresh Python process."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return RunMemory(**json.loads(out.stdout))


if __name__ == "__main__":
    print(json.dumps(asdict(_long_run(int(sys.argv[1])))))
