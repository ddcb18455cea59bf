"""Memory: Python-heap growth of a History over many steps, RSS over a long recorded run,
what recording adds to GPT-2-like models of 10M to 350M parameters, and the peak an activation
sample adds to a model with large activations.

Run as a module it measures in a fresh process and prints JSON, so the RSS is not that of the
models other benchmarks built earlier: ``python -m benchmarks.memory STEPS`` (the long run),
``python -m benchmarks.memory gpt2 NAME`` (one size of :data:`GPT2_SIZES`),
``python -m benchmarks.memory peak MEASURE DEPTH WIDTH BATCH`` (the peak RSS of one model).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from gradwidget.models import deep_mlp

__all__ = ["GPT2_SIZES", "HistoryGrowth", "RunMemory", "activation_peak", "gpt2_memory",
           "history_growth", "run_memory"]  # fmt: skip

# name: (blocks, width, heads, vocabulary); gpt2-124m and gpt2-350m are GPT-2 small and medium.
GPT2_SIZES = {
    "gpt2-10m": (6, 256, 4, 16384),
    "gpt2-30m": (6, 512, 8, 16384),
    "gpt2-85m": (8, 768, 12, 32768),
    "gpt2-124m": (12, 768, 12, 50257),
    "gpt2-350m": (24, 1024, 16, 50257),
}

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


def _gpt2(name: str) -> dict:
    """One size: parameter bytes, what the recorder holds, RSS added, capture and redraw time.

    Plain SGD without momentum (no optimizer state) and gradients kept between steps
    (``set_to_none=False``), so that the RSS after the plain steps is the steady state the
    recorder adds to. Every step of the recorded part is sampled (``act_every=1``, no
    budget): activation statistics, the weight sample and the update ratio each time.
    """
    import transformers

    from gradwidget import Recorder, Thresholds
    from gradwidget.view._widgets import close_tree
    from gradwidget.view.live import LiveCharts

    torch.set_num_threads(1)
    torch.manual_seed(0)
    blocks, width, heads, vocab = GPT2_SIZES[name]
    config = transformers.GPT2Config(
        n_layer=blocks, n_embd=width, n_head=heads, vocab_size=vocab, n_positions=64
    )
    model = transformers.GPT2LMHeadModel(config)
    params = [p for p in model.parameters()]
    param_bytes = sum(p.numel() * p.element_size() for p in params)
    optimizer = torch.optim.SGD(params, lr=1e-3)
    x = torch.randint(vocab, (1, 32))

    def step(recorder: Recorder | None) -> tuple[float, float]:
        optimizer.zero_grad(set_to_none=False)
        began = time.perf_counter()
        loss = model(x, labels=x).loss
        loss.backward()
        captured = time.perf_counter()
        if recorder is not None:
            recorder.capture(loss)
        left = time.perf_counter()
        optimizer.step()
        return time.perf_counter() - began - (left - captured), left - captured

    plain = [step(None)[0] for _ in range(3)]
    rss_plain = _rss_mb()
    with Recorder(model, act_every=1, budget=None) as recorder:
        timed = [step(recorder) for _ in range(4)]
        rss_recorded = _rss_mb()
        tracker, history_bytes = recorder._updates.nbytes, recorder.live.nbytes()
        history = recorder.history
    live = LiveCharts(Thresholds())
    began = time.perf_counter()
    live.draw(history, final=True)
    redraw_s = time.perf_counter() - began
    close_tree(live)
    return {
        "name": name,
        "params_m": round(sum(p.numel() for p in params) / 1e6, 1),
        "layers": len(history.layers),
        "param_mb": round(param_bytes / 2**20, 1),
        "tracker_bytes": tracker,  # the update-ratio sample, on the parameters' device
        "tracker_over_params": tracker / param_bytes,
        "history_mb": round(history_bytes / 2**20, 2),  # buckets sized from the model
        "capacity": history.capacity,
        "held_over_params": (tracker + history_bytes) / param_bytes,  # the 1 % bound
        "rss_added_mb": round(rss_recorded - rss_plain, 1),
        "rss_added_over_params": (rss_recorded - rss_plain) * 2**20 / param_bytes,
        "step_ms": round(1000 * float(np.median(plain)), 1),
        "capture_ms": round(1000 * float(np.median([c for _, c in timed[1:]])), 1),
        "redraw_ms": round(1000 * redraw_s, 1),
    }


def _activation_peak(measure: str, depth: int, width: int, batch: int) -> dict:
    """Peak RSS of a process training a wide sigmoid MLP, plain or recorded every step."""
    from gradwidget import Recorder

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = deep_mlp(depth, width, "sigmoid")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch, 64), torch.randint(10, (batch,))

    def step(recorder: Recorder | None) -> None:
        optimizer.zero_grad(set_to_none=False)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        if recorder is not None:
            recorder.capture(loss)
        optimizer.step()

    for _ in range(2):
        step(None)
    recorder = None if measure == "plain" else Recorder(model, act_every=1, budget=None,
                                                          measure=measure.split(","))  # fmt: skip
    for _ in range(3):
        step(recorder)
    activations = batch * width * 4 * depth
    return {"measure": measure, "peak_rss_mb": _peak_rss_mb(), "activation_mb": activations / 2**20}


def activation_peak(
    measure: str = "gradients,activations,updates", depth: int = 12, width: int = 1024,
    batch: int = 4096,
) -> dict:  # fmt: skip
    """:func:`_activation_peak` in a fresh process (``measure``: "plain" or tiers by commas).

    glibc's malloc raises its mmap threshold as large blocks are freed, after which freed
    activations stay in the heap and the peak RSS moves by ±60 MB from run to run; a fixed
    threshold returns every large block when it is freed, so the peak is what was live.
    """
    command = [sys.executable, "-m", "benchmarks.memory", "peak", measure, str(depth), str(width),
               str(batch)]  # fmt: skip
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.splitlines()[-1])


def gpt2_memory(names: tuple[str, ...] = tuple(GPT2_SIZES)) -> list[dict]:
    """:func:`_gpt2` for each size, each in a fresh Python process."""
    rows = []
    for name in names:
        command = [sys.executable, "-m", "benchmarks.memory", "gpt2", name]
        out = subprocess.run(command, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.splitlines()[-1]))
    return rows


if __name__ == "__main__":
    if sys.argv[1] == "gpt2":
        print(json.dumps(_gpt2(sys.argv[2])))
    elif sys.argv[1] == "peak":
        print(json.dumps(_activation_peak(sys.argv[2], *map(int, sys.argv[3:6]))))
    else:
        print(json.dumps(asdict(_long_run(int(sys.argv[1])))))
