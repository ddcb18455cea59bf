"""What the panel costs: throughput of panel-managed training, UI traffic, time to first chart.

Widgets are built while :class:`CommTap` is active, so each gets a dummy comm that counts and
timestamps every state update it would send to the browser, with its size (JSON + buffers).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .interleave import spread
from .workloads import Workload, make_batches

__all__ = ["CommTap", "first_chart_s", "panel_throughput", "ui_scale", "ui_traffic"]

_MARKS = frozenset({"LinesModel", "HeatMapModel", "GridHeatMapModel", "ScatterModel", "BarsModel"})


@dataclass(frozen=True)
class Message:
    at: float
    model_name: str
    nbytes: int  # JSON state plus binary buffers
    buffer_bytes: int  # the arrays alone: zero for a mark without data


class CommTap:
    """Give widgets created meanwhile a comm that records what they send.

    Both the opening message (a new widget's full state) and later updates count: each is
    traffic to the browser, and a chart may first appear with its data already in it.
    """

    def __init__(self) -> None:
        self.messages: list[Message] = []

    @contextmanager
    def installed(self) -> Iterator[CommTap]:
        import comm

        original = comm.create_comm
        comm.create_comm = self._create
        try:
            yield self
        finally:
            comm.create_comm = original

    def _create(self, **kwargs: Any) -> Any:
        from comm import DummyComm

        tap = self
        # The widget's state rides on the comm's opening message: take its model name there.
        model_name = kwargs.get("data", {}).get("state", {}).get("_model_name", "?")

        class CountingComm(DummyComm):
            def publish_msg(self, msg_type: str, data: Any = None, *args: Any, **kw: Any) -> None:
                opening = msg_type == "comm_open"
                if opening or (msg_type == "comm_msg" and data and data.get("method") == "update"):
                    tap._record(model_name, data or {}, kw.get("buffers"))

        return CountingComm(**kwargs)

    def _record(self, model_name: str, data: dict, buffers: Any) -> None:
        arrays = sum(memoryview(b).nbytes for b in buffers or ())
        size = len(json.dumps(data.get("state", {}), default=str)) + arrays
        self.messages.append(Message(time.perf_counter(), model_name, size, arrays))

    def since(self, start: float) -> list[Message]:
        return [m for m in list(self.messages) if m.at >= start]


def _bursts(messages: list[Message], gap_s: float) -> int:
    """Refreshes: runs of messages with gaps under ``gap_s``."""
    times = sorted(m.at for m in messages)
    return sum(1 for i, t in enumerate(times) if i == 0 or t - times[i - 1] > gap_s)


@dataclass(frozen=True)
class _Speed:
    """Steps per second of wall time, and per CPU second of this process (all its threads:
    the panel's refresher too). On a shared machine the wall clock also counts the time other
    processes held the cores; the CPU clock does not."""

    wall: float
    cpu: float


def _timed(steps: int, train: Callable[[], Any]) -> _Speed:
    wall, cpu = time.perf_counter(), time.process_time()
    train()
    return _Speed(steps / (time.perf_counter() - wall), steps / (time.process_time() - cpu))


def _plain_speed(workload: Workload, data: tuple, steps: int, batch: int) -> _Speed:
    torch.manual_seed(0)
    model = workload.build()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = data

    def train() -> None:
        order = torch.randperm(len(x))
        for i in range(steps):
            idx = order[(i * batch) % len(x) :][:batch]
            optimizer.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            optimizer.step()

    return _timed(steps, train)


def _panel_speed(workload: Workload, data: tuple, steps: int, batch: int) -> _Speed:
    import gradwidget as gw

    torch.manual_seed(0)
    with CommTap().installed():
        panel = gw.GradPanel(workload.build(), data, lr=0.01, steps=steps, batch_size=batch)
        try:
            return _timed(steps, lambda: (panel.train(), panel.wait(timeout=600)))
        finally:
            panel.close()


def _run_speed(workload: Workload, data: tuple, steps: int, batch: int) -> _Speed:
    """A gradwidget Run without a panel: training.py's loop and the default Recorder."""
    import gradwidget as gw

    torch.manual_seed(0)
    model = workload.build()
    return _timed(steps, lambda: gw.train(model, data, lr=0.01, steps=steps, batch_size=batch))


def _dataset(workload: Workload, batches: int) -> tuple[torch.Tensor, torch.Tensor]:
    parts = make_batches(workload, batches, torch.device("cpu"))
    return torch.cat([x for x, _ in parts]), torch.cat([y for _, y in parts])


def panel_throughput(workload: Workload, steps: int, rounds: int) -> dict[str, Any]:
    """Speed of ``GradPanel.train()`` and of ``gw.train`` over a plain loop's, interleaved.

    ``gw.train`` (a Run with its Recorder, no panel) splits the panel's cost into that of the
    training loop and that of the live view. Ratios of steps per wall second (``ratio``,
    ``run_ratio``) and per CPU second of the process (``cpu_ratio``, ``run_cpu_ratio``).
    """
    batch = workload.input_shape[0]
    data = _dataset(workload, 16)
    # Plain runs before and after every gradwidget run: P R G P R G ... P.
    plain = [_plain_speed(workload, data, steps, batch)]
    runs, managed = [], []
    names = ("run_ratio", "ratio", "run_cpu_ratio", "cpu_ratio")
    ratios: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(rounds):
        runs.append(_run_speed(workload, data, steps, batch))
        managed.append(_panel_speed(workload, data, steps, batch))
        plain.append(_plain_speed(workload, data, steps, batch))
        for clock, suffix in (("wall", "ratio"), ("cpu", "cpu_ratio")):
            # plain seconds per step, around this round
            around = (1 / getattr(plain[-2], clock) + 1 / getattr(plain[-1], clock)) / 2
            ratios[f"run_{suffix}"].append(getattr(runs[-1], clock) * around)
            ratios[suffix].append(getattr(managed[-1], clock) * around)
    return {
        "model": workload.name,
        "steps": steps,
        "plain_steps_per_s": spread([p.wall for p in plain])["median"],
        "run_steps_per_s": spread([r.wall for r in runs])["median"],
        "panel_steps_per_s": spread([m.wall for m in managed])["median"],
        **{name: spread(values) for name, values in ratios.items()},
    }


def ui_traffic(seconds: float, refresh_hz: float = 10.0) -> dict[str, Any]:
    """Messages, refreshes and bytes per second while an own loop runs as fast as it can."""
    import gradwidget as gw

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(8, 8), torch.randint(2, (8,))
    with CommTap().installed() as tap:
        panel = gw.GradPanel(model, refresh_hz=refresh_hz)
        try:
            start, steps = time.perf_counter(), 0
            while time.perf_counter() - start < seconds:
                optimizer.zero_grad()
                loss = F.cross_entropy(model(x), y)
                loss.backward()
                panel.capture(loss)
                optimizer.step()
                steps += 1
            elapsed = time.perf_counter() - start
            sent = tap.since(start)
        finally:
            panel.close()
    return {
        "seconds": elapsed,
        "steps_per_s": steps / elapsed,
        "messages_per_s": len(sent) / elapsed,
        # One refresh may send its messages over a few ms; two refreshes are 1/hz s apart.
        "refreshes_per_s": _bursts(sent, 0.5 / refresh_hz) / elapsed,
        "bytes_per_s": sum(m.nbytes for m in sent) / elapsed,
        "refresh_hz": refresh_hz,
    }


def first_chart_s(workload: Workload, repeats: int, timeout: float = 30.0) -> dict[str, Any]:
    """Seconds from ``panel.train()`` to the first update of a chart mark, per repeat."""
    import gradwidget as gw

    data = _dataset(workload, 4)
    waits = []
    for _ in range(repeats):
        with CommTap().installed() as tap:
            panel = gw.GradPanel(workload.build(), data, lr=0.01, steps=200)
            try:
                start = time.perf_counter()
                panel.train()
                waits.append(_wait_for_mark(tap, start, timeout))
                panel.stop()
                panel.wait(timeout=timeout)
            finally:
                panel.close()
    return {"model": workload.name, "seconds": spread(waits), "repeats": repeats}


def _wait_for_mark(tap: CommTap, start: float, timeout: float) -> float:
    while time.perf_counter() - start < timeout:
        marks = [m for m in tap.since(start) if m.model_name in _MARKS and m.buffer_bytes]
        if marks:
            return marks[0].at - start
        time.sleep(0.002)
    return float("nan")


def _scale_names(n_layers: int) -> list[str]:
    """A plain stack for 10 layers; blocks of 10 layers (as a transformer's) above that."""
    if n_layers <= 10:
        return [str(2 * i) for i in range(n_layers)]
    return [f"blocks.{b}.fc{i}" for b in range(n_layers // 10) for i in range(10)]


def _redraws(
    tap: CommTap, live: Any, history: Any, repeats: int, final: bool
) -> tuple[list[float], list]:
    """Time ``repeats`` redraws, each after one more step; the messages they sent."""
    rng = np.random.default_rng(1)
    times, begin = [], time.perf_counter()
    for _ in range(repeats):
        step = int(history.steps[-1]) + 1
        history.append("grad_norm", step, rng.lognormal(-3, 1, len(history.layers)))
        snapshot = history.snapshot()
        start = time.perf_counter()
        live.draw(snapshot, final=final)
        times.append(time.perf_counter() - start)
    return times, tap.since(begin)


def ui_scale(
    layer_counts: tuple[int, ...] = (10, 100, 500),
    steps: int = 2000,
    repeats: int = 10,
    hz: float = 10.0,
) -> list[dict[str, Any]]:
    """One Python redraw of the live charts, and its traffic, at 10, 100 and 500 layers.

    A light redraw (lines, flow, activity) happens up to ``hz`` times a second; a full one
    (plus the diagnosis and the heat map) once a second. Bytes/s at ``hz`` counts
    ``hz - 1`` light and one full redraw; points are the float32 values sent.
    """
    from gradwidget import History, Thresholds
    from gradwidget.view._widgets import close_tree
    from gradwidget.view.live import LiveCharts

    rows = []
    for n in layer_counts:
        history = History(_scale_names(n), 1024)
        rng = np.random.default_rng(0)
        for step in range(steps):
            history.append("grad_norm", step, rng.lognormal(-3, 1, n))
            history.append("loss", step, 2.0 / (1 + step))
            if step % 10 == 0:  # sampled series: every chart has data to draw
                history.append("update_ratio", step, rng.lognormal(-7, 1, n))
                history.append("weight_norm", step, rng.lognormal(0, 0.1, n))
                history.append("dead_frac", step, rng.random(n) * 0.1)
                history.append("saturated_frac", step, rng.random(n) * 0.1)
        with CommTap().installed() as tap:
            live = LiveCharts(Thresholds())  # widgets on this thread, with counting comms
        live.draw(history.snapshot(), final=True)  # the first draw shows the charts
        light, light_sent = _redraws(tap, live, history, repeats, final=False)
        full, full_sent = _redraws(tap, live, history, repeats, final=True)
        per = {k: sum(m.nbytes for m in sent) / repeats for k, sent in
               (("light", light_sent), ("full", full_sent))}  # fmt: skip
        points = sum(m.buffer_bytes for m in full_sent) / repeats / 4
        rows.append({
            "layers": n,
            "redraw_ms": spread([1000 * t for t in light]),
            "full_redraw_ms": spread([1000 * t for t in full]),
            "bytes_per_refresh": per["light"],
            "bytes_per_s_at_hz": (hz - 1) * per["light"] + per["full"],
            "points_per_full_refresh": points,
            "hz": hz,
        })  # fmt: skip
        close_tree(live)
    return rows
