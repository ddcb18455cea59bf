"""``python -m benchmarks [--quick] [--models a,b] [--device auto|cpu|cuda] [--clock ...]``."""

from __future__ import annotations

import argparse
import os
import platform
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gradwidget.record._budget import DEFAULT_BUDGET

from . import explorer, memory, report, ui
from .overhead import TARGETS, OverheadRow, measure_overhead
from .profiling import phase_breakdown, profile_recorder
from .workloads import WORKLOADS

CLOCKS = {"wall": time.perf_counter, "thread": time.thread_time}
_UI_BYTES_PER_S = 1_000_000  # the "bounded byte rate" target: 1 MB/s to the browser at most


@dataclass(frozen=True)
class Settings:
    """How much of each benchmark to run."""

    rounds: int
    block: int | None  # None: each workload's own block length
    sweep_first: tuple[int, ...]  # intervals swept on the first (smallest) model
    sweep_rest: tuple[int, ...]
    panel_steps: int  # a managed run: GradPanel's default length, 600 steps
    panel_rounds: int
    ui_seconds: float
    chart_repeats: int
    history_steps: int
    run_steps: int
    profile_steps: int
    settle_samples: int  # activation intervals a budgeted Recorder trains untimed first


FULL = Settings(12, None, (1, 10, 100), (1,), 600, 11, 3.0, 3, 1_000_000, 20_000, 30, 25)
QUICK = Settings(3, 10, (1,), (1,), 30, 1, 1.0, 1, 25_000, 200, 5, 1)  # a first chart at 0.5 s


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    settings = QUICK if args.quick else FULL
    if args.rounds:
        settings = Settings(**{**asdict(settings), "rounds": args.rounds})
    torch.set_num_threads(1)  # the machine is shared; one thread keeps ratios stable
    device = _device(args.device)
    names = args.models.split(",")
    started, load = time.perf_counter(), os.getloadavg()[0]
    results = _run_all(settings, names, device, CLOCKS[args.clock])
    results["meta"] = _meta(device, args.quick, time.perf_counter() - started)
    results["meta"]["clock"] = args.clock
    # Other processes on the machine widen the spread: say how busy it was.
    results["meta"]["load_avg_start_end"] = f"{load:.1f} / {os.getloadavg()[0]:.1f}"
    stem = device.type + ("-quick" if args.quick else "")
    md, js = report.write(results, Path(args.out), stem)
    print(f"wrote {md} and {js}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="few rounds, short runs")
    parser.add_argument("--models", default=",".join(WORKLOADS), help="comma-separated")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--rounds", type=int, default=0, help="override the rounds per model")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument(
        "--clock",
        default="wall",
        choices=tuple(CLOCKS),
        help="overhead timing: wall time, or this thread's CPU time (steadier on a busy machine)",
    )
    return parser


def _device(choice: str) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def _run_all(
    s: Settings, names: list[str], device: torch.device, clock: Callable[[], float]
) -> dict[str, Any]:
    first = WORKLOADS[names[0]]
    rows: list[OverheadRow] = []
    for i, name in enumerate(names):
        sweep = s.sweep_first if i == 0 else s.sweep_rest
        print(f"overhead: {name}, {s.rounds} rounds", flush=True)
        rows += measure_overhead(
            WORKLOADS[name], sweep, s.rounds, device, s.block, s.settle_samples, clock
        )
    results: dict[str, Any] = {"overhead": [{**asdict(r), "met": r.met} for r in rows]}
    results["profiles"] = {
        f"{r.model} {r.kind}@{r.interval}": _guarded(lambda r=r: _profile(r, s, device))
        for r in rows
        if r.met is False
    }
    sections: dict[str, Callable[[], Any]] = {
        "panel_throughput": lambda: ui.panel_throughput(first, s.panel_steps, s.panel_rounds),
        "ui_traffic": lambda: ui.ui_traffic(s.ui_seconds),
        "ui_scale": lambda: ui.ui_scale(repeats=s.chart_repeats * 3),
        "first_chart": lambda: ui.first_chart_s(first, s.chart_repeats),
        "history_memory": lambda: asdict(memory.history_growth(s.history_steps)),
        "run_memory": lambda: asdict(memory.run_memory(s.run_steps)),
        "explorer_latency": lambda: explorer.latency(rounds=max(3, s.chart_repeats * 5)),
    }
    if device.type == "cuda":
        from .cuda import count_syncs
        from .overhead import contenders_for

        sections["cuda_syncs"] = lambda: count_syncs(first, contenders_for((1,)), 20, device)
    for key, fn in sections.items():
        print(f"{key}", flush=True)
        results[key] = _guarded(fn)
    results["targets"] = _targets(rows, results)
    return results


def _profile(row: OverheadRow, s: Settings, device: torch.device) -> dict[str, Any]:
    """Where a gradwidget configuration that missed its target spends its time."""
    workload = WORKLOADS[row.model]
    budget = DEFAULT_BUDGET if row.kind == "gw_default" else None
    args = (workload, row.interval, budget)
    return {
        "by_phase": phase_breakdown(*args, max(2, s.rounds), device),
        "cprofile": profile_recorder(*args, s.profile_steps, device),
    }


def _guarded(fn: Callable[[], Any]) -> Any:
    """Run one benchmark; a failure is reported in the results, not raised."""
    try:
        return fn()
    except Exception as exc:  # a broken section must not lose the others' numbers
        traceback.print_exc()
        return {"error": f"{type(exc).__name__}: {exc}"}


def _targets(rows: list[OverheadRow], results: dict[str, Any]) -> list[dict[str, Any]]:
    out = [
        _target(f"{r.model}: {r.kind}@{r.interval} ratio", f"<= {r.target}", r.median, r.met)
        for r in rows
        if (r.kind, r.interval) in TARGETS
    ]
    panel, traffic = results["panel_throughput"], results["ui_traffic"]
    history = results["history_memory"]
    if "ratio" in panel:
        # Steps per CPU second of the process, as the callbacks' benchmark: on a shared machine
        # the wall-clock ratio moved by 0.2 from round to round (reported beside it).
        ratio = panel["cpu_ratio"]["median"]
        out.append(_target("panel throughput ratio (CPU time)", ">= 0.95", ratio, ratio >= 0.95))
    if "refreshes_per_s" in traffic:
        rate, nbytes = traffic["refreshes_per_s"], traffic["bytes_per_s"]
        out.append(_target("UI refreshes/s", "<= 10", rate, rate <= 10))
        out.append(_target("UI bytes/s", f"<= {_UI_BYTES_PER_S:,}", nbytes, nbytes <= 1e6))
    for row in results["ui_scale"] if isinstance(results.get("ui_scale"), list) else ():
        if row["layers"] == max(r["layers"] for r in results["ui_scale"]):
            ms = row["full_redraw_ms"]["median"]
            what = f"UI redraw at {row['layers']} layers (ms)"
            out.append(_target(what, "<= 20", ms, ms <= 20))
    for row in results["explorer_latency"].get("rows", ()):
        if row["depth"] == 50:
            ms = row["update_ms"]["median"]
            what = "explorer update at depth 50 (ms)"
            out.append(_target(what, f"<= {explorer.TARGET_MS:.0f}", ms, ms <= explorer.TARGET_MS))
    if "growth_after_full" in history:
        grown = history["growth_after_full"]
        out.append(
            _target("History heap growth after full (B)", "<= 65,536", grown, grown <= 65536)
        )
    return out


def _target(what: str, target: str, measured: float, met: bool) -> dict[str, Any]:
    return {"what": what, "target": target, "measured": round(float(measured), 4), "met": met}


def _meta(device: torch.device, quick: bool, seconds: float) -> dict[str, Any]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.system()} {platform.machine()}, {name}",
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "mode": "quick" if quick else "full",
        "seconds": round(seconds, 1),
    }


def _cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "unknown CPU"
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")


if __name__ == "__main__":
    main()
