"""``python -m benchmarks.distributed_log``: the FSDP2 collective, the log's bytes, follow latency.

1. The one ``all_reduce`` a capture adds under FSDP2 (2 gloo processes on CPU), for flat tensors
   of squared norms as long as 10, 75 and 500 layers' parameters; and the step time of the
   10-layer MLP under FSDP2 with and without the recorder, interleaved (median ratio).
2. Bytes on disk per captured step (loss, grad_norm, nonfinite) for 3, 10 and 50 layers.
3. What ``log_dir`` adds to a recorded step (10-layer width-256 MLP, every step captured),
   interleaved blocks, median ratio.
4. Follow latency: a writer process appends a step every 10 ms, a reader polls at the follow
   view's 2 Hz; the age of the newest step each time a poll brings data.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.multiprocessing as mp
from torch import nn

import gradwidget as gw
from gradwidget.history import History
from gradwidget.logs.reader import LogReader
from gradwidget.logs.writer import FILENAME, LogWriter

SIZES = {"10 layers": 20, "75 layers": 150, "500 layers": 1000}  # parameters (weight + bias)


def collective(rank: int, port: int, out: str) -> None:
    """One rank: time all_reduce of each size, then FSDP2 steps with/without the recorder."""
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    lines = []
    for label, n in SIZES.items():
        buffer = torch.rand(n)
        times = []
        for _ in range(500):
            torch.distributed.barrier()  # both ranks enter together: time the collective only
            started = time.perf_counter()
            torch.distributed.all_reduce(buffer)
            times.append(time.perf_counter() - started)
        lines.append(f"all_reduce {label} ({n} floats): median {np.median(times) * 1e6:.0f} us")
    ratio, plain = _fsdp_ratio()
    lines.append(f"FSDP2 10-layer MLP step {plain * 1e3:.2f} ms; with recorder x{ratio:.3f}")
    if rank == 0:
        Path(out).write_text("\n".join(lines))
    torch.distributed.barrier()  # neither rank leaves while the other still talks to it
    torch.distributed.destroy_process_group()


def _fsdp_ratio(rounds: int = 15, block: int = 20) -> tuple[float, float]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    torch.manual_seed(0)
    model = gw.models.deep_mlp(depth=10, width=256, activation="sigmoid")
    mesh = init_device_mesh("cpu", (2,))
    for layer in model.modules():
        if isinstance(layer, nn.Linear):
            fully_shard(layer, mesh=mesh)
    fully_shard(model, mesh=mesh)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(128, 64), torch.randint(0, 10, (128,))
    recorder = gw.Recorder(model, act_every=10)
    ratios, plains = [], []
    for _ in range(rounds):
        timed = {}
        for record in (False, True):
            torch.distributed.barrier()
            started = time.perf_counter()
            for _ in range(block):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                if record:
                    recorder.capture(loss)
                opt.step()
            timed[record] = (time.perf_counter() - started) / block
        ratios.append(timed[True] / timed[False])
        plains.append(timed[False])
    recorder.close()
    return statistics.median(ratios), statistics.median(plains)


def disk_bytes() -> list[str]:
    """Bytes per captured step, and the writer's time per step (appends and commits)."""
    lines = []
    for n_layers in (3, 10, 50):
        folder = Path(tempfile.mkdtemp()) / "run"
        names = tuple(str(i) for i in range(n_layers))
        layer = nn.Linear(2, 2)
        layers = [SimpleNamespace(name=n, module=layer, params=()) for n in names]
        steps, rows = 20_000, np.random.default_rng(0).random((20_000, n_layers))
        seconds = {}
        for logged in (False, True):
            history = History(names)
            if logged:
                writer = LogWriter(folder)
                writer.start(layers, history)
            started = time.perf_counter()
            for step in range(steps):
                history.append("loss", step, 1.0)
                history.append("grad_norm", step, rows[step])
                history.append("nonfinite", step, np.zeros(n_layers))
            if logged:
                writer.close()
            seconds[logged] = time.perf_counter() - started
        used = sum(f.stat().st_size for f in folder.iterdir())
        cost = (seconds[True] - seconds[False]) / steps * 1e6
        lines.append(
            f"log: {n_layers} layers, {used / steps:.0f} bytes and {cost:.1f} us per captured step"
        )
    return lines


def log_overhead(rounds: int = 31, block: int = 40) -> list[str]:
    x, y = torch.randn(128, 64), torch.randint(0, 10, (128,))
    folder = Path(tempfile.mkdtemp())
    runs = {}
    for logged in (False, True):  # one model each: a recorder's armed hooks must not time the other
        torch.manual_seed(0)
        model = gw.models.deep_mlp(depth=10, width=256, activation="sigmoid")
        log_dir = folder / "run" if logged else None
        recorder = gw.Recorder(model, budget=None, log_dir=log_dir)
        runs[logged] = (model, torch.optim.SGD(model.parameters(), lr=0.01), recorder)
    ratios = []
    for _ in range(rounds):
        timed = {}
        for logged, (model, opt, recorder) in runs.items():
            started = time.perf_counter()
            for _ in range(block):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                loss.backward()
                recorder.capture(loss)
                opt.step()
            timed[logged] = time.perf_counter() - started
        ratios.append(timed[True] / timed[False])
    for _, _, recorder in runs.values():
        recorder.close()
    q1, median, q3 = np.percentile(ratios, [25, 50, 75])
    return [f"log_dir on a recorded step: x{median:.3f} (IQR {q1:.3f}-{q3:.3f})"]


_WRITER = """
import sys, time
from types import SimpleNamespace
from torch import nn
from gradwidget.history import History
from gradwidget.logs.writer import LogWriter
writer, history = LogWriter(sys.argv[1]), History(("a",))
writer.start([SimpleNamespace(name="a", module=nn.Linear(1, 1), params=())], history)
start = float(sys.argv[2])
for step in range(1500):
    history.append("loss", step, time.time() - start)  # the moment the step was recorded
    time.sleep(0.01)
writer.close()
"""


def follow_latency() -> list[str]:
    folder = Path(tempfile.mkdtemp()) / "run"
    start = time.time()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    job = subprocess.Popen([sys.executable, "-c", _WRITER, str(folder), str(start)], env=env)
    reader, ages = None, []
    while job.poll() is None:
        time.sleep(0.5)  # the follow view's default 2 Hz
        try:
            reader = reader or LogReader(folder / FILENAME)
        except gw.GradWidgetError:
            continue
        if reader.poll():
            ages.append(time.time() - start - float(reader.history.series("loss").last[-1, 0]))
    ages = np.array(ages[1:])  # the first poll catches up with the writer's start
    return [
        f"follow latency (flush 0.5 s, poll 2 Hz): median {np.median(ages):.2f} s, "
        f"max {ages.max():.2f} s over {ages.size} polls"
    ]


def main() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = Path(tempfile.mkdtemp()) / "collective.txt"
    mp.start_processes(collective, args=(port, str(out)), nprocs=2, start_method="spawn")
    lines = out.read_text().splitlines() + disk_bytes() + log_overhead() + follow_latency()
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
