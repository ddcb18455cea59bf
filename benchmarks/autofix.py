"""Find a fix against AUTOTRAINER: detection, false findings and repairs on a zoo of nets.

``python -m benchmarks.autofix [--only TEXT] [--budget 60] [--out benchmarks/results]``

Every setup of :mod:`benchmarks.autofix_zoo` goes through ``gw.autofix`` with its own training
settings and the default budget: the baseline's diagnosis is the detection, the winner's
full run the repair. A broken setup counts as detected when a finding of its kind is raised
(AUTOTRAINER's five problems: vanishing, exploding, dying ReLU, oscillating loss, slow
convergence; NaN/Inf counts as exploding as it does there, a plateau as slow convergence) and
as repaired when the winner's full run has no finding of that kind and reaches the data set's
accuracy bar. A healthy setup's every finding is a false one. One torch thread.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

import gradwidget as gw

from .autofix_zoo import BARS, SETUPS, Setup, data_for

# The published figures (Zhang et al., ICSE 2021; IEEE TDSC 2024: 701 models, six data sets).
AUTOTRAINER = {"detection": "100 %", "false_positives": "0", "repair": "98.42 %",
               "accuracy_gain": "+36.42 %", "models": "701 models, six data sets"}  # fmt: skip
# The findings that count as detecting a planted problem.
ACCEPTS = {"exploding": {"exploding", "non_finite"},
           "slow_convergence": {"slow_convergence", "plateau"}}  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One setup's outcome."""

    name: str
    kind: str | None
    data: str
    found: tuple[str, ...]
    detected: bool
    winner: tuple[str, ...]
    repaired: bool
    accuracy_before: float | None
    accuracy_after: float | None
    seconds: float
    trials: int
    message: str


def evaluate(setup: Setup, budget_s: float) -> Row:
    """Find a fix for one setup; what was found, what won, whether it was repaired."""
    started = time.perf_counter()
    result = gw.autofix(setup.model(), data_for(setup.data), budget_s=budget_s, **setup.config)
    seconds = time.perf_counter() - started
    found = tuple(f.kind for f in result.findings)
    accepted = ACCEPTS.get(setup.kind or "", {setup.kind})
    after = result.run.test_accuracy if result.run is not None else None
    left = {f.kind for f in gw.diagnose(result.run.history)} if result.run else accepted
    repaired = bool(result.winner) and not left & accepted and (after or 0) >= BARS[setup.data]
    before = result.baseline.test_accuracy if result.baseline is not None else None
    return Row(setup.name, setup.kind, setup.data, found, bool(set(found) & accepted),
               result.winner, setup.kind is not None and repaired, before, after,
               round(seconds, 2), len(result.trial_list), result.message)  # fmt: skip


def summary(rows: list[Row]) -> dict[str, object]:
    """Detection per kind, false findings, repair rate, accuracy gain, seconds per repair."""
    broken = [r for r in rows if r.kind is not None]
    healthy = [r for r in rows if r.kind is None]
    kinds = sorted({r.kind for r in broken if r.kind})
    per_kind = {k: _rate([r.detected for r in broken if r.kind == k]) for k in kinds}
    gains = [(r.accuracy_after or 0) - (r.accuracy_before or 0) for r in broken if r.repaired]
    return {
        "setups": len(rows), "broken": len(broken), "healthy": len(healthy),
        "detection": _rate([r.detected for r in broken]), "detection_per_kind": per_kind,
        "false_findings": sum(len(r.found) for r in healthy),
        "healthy_with_findings": sum(bool(r.found) for r in healthy),
        "repair": _rate([r.repaired for r in broken]),
        "repair_per_kind": {k: _rate([r.repaired for r in broken if r.kind == k]) for k in kinds},
        "accuracy_gain_pp": round(100 * float(np.mean(gains)), 2) if gains else None,
        "seconds_per_repair": round(float(np.median([r.seconds for r in broken])), 1),
        "seconds_max": max(r.seconds for r in rows),
    }  # fmt: skip


def _rate(flags: list[bool]) -> str:
    return f"{sum(flags)}/{len(flags)} ({100 * sum(flags) / max(len(flags), 1):.1f} %)"


def report(rows: list[Row], totals: dict[str, object], seconds: float) -> str:
    """The Markdown results: the comparison with AUTOTRAINER, then one line per setup."""
    lines = [
        "# Find a fix: benchmark against AUTOTRAINER",
        "",
        f"`python -m benchmarks.autofix`: {totals['setups']} setups ({totals['broken']} broken, "
        f"{totals['healthy']} healthy), default budget, one torch thread, {seconds:.0f} s in all "
        f"(load average at start / end: {totals['load_avg_start_end']} on {os.cpu_count()} cores).",
        "",
        "| | gradwidget (this zoo) | AUTOTRAINER (published) |",
        "|---|---|---|",
        f"| detection | {totals['detection']} | {AUTOTRAINER['detection']} |",
        f"| false findings on healthy nets | {totals['false_findings']} | "
        f"{AUTOTRAINER['false_positives']} |",
        f"| repair | {totals['repair']} | {AUTOTRAINER['repair']} |",
        f"| accuracy gain of repaired nets | +{totals['accuracy_gain_pp']} points | "
        f"{AUTOTRAINER['accuracy_gain']} |",
        f"| seconds per repair (median) | {totals['seconds_per_repair']} | - |",
        f"| zoo | {totals['setups']} setups, three offline data sets | "
        f"{AUTOTRAINER['models']} |",
        "",
        "| problem | detected | repaired |",
        "|---|---|---|",
        *(f"| {k} | {v} | {totals['repair_per_kind'][k]} |"  # type: ignore[index]
          for k, v in totals["detection_per_kind"].items()),  # type: ignore[union-attr]
        "",
        "| setup | planted | found | winner | test accuracy | repaired | s |",
        "|---|---|---|---|---|---|---|",
        *(_line(r) for r in rows),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def _line(r: Row) -> str:
    before = _pct(r.accuracy_before, "diverged")  # every zoo set has a test split
    acc = f"{before} -> {_pct(r.accuracy_after)}" if r.winner else before
    fixes = " + ".join(gw.remedies.LABELS[n] for n in r.winner) or "-"
    found = ", ".join(r.found) or "-"
    ok = "-" if r.kind is None else ("yes" if r.repaired else "no")
    return f"| {r.name} | {r.kind or 'healthy'} | {found} | {fixes} | {acc} | {ok} | {r.seconds} |"


def _pct(value: float | None, missing: str = "n/a") -> str:
    return missing if value is None else f"{100 * value:.1f} %"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.autofix", description=__doc__)
    parser.add_argument("--only", default="", help="setups whose name contains this text")
    parser.add_argument("--budget", type=float, default=60.0, help="budget_s of each search")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started, rows, load = time.perf_counter(), [], os.getloadavg()[0]
    for setup in (s for s in SETUPS if args.only in s.name):
        rows.append(evaluate(setup, args.budget))
        print(_line(rows[-1]), flush=True)
    seconds = time.perf_counter() - started
    totals = summary(rows)
    # Other processes on the machine slow every run: say how busy it was.
    totals["load_avg_start_end"] = f"{load:.1f} / {os.getloadavg()[0]:.1f}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = "autofix" if not args.only else "autofix-partial"
    (out / f"{stem}.md").write_text(report(rows, totals, seconds))
    results = {"totals": totals, "rows": [asdict(r) for r in rows], "seconds": seconds}
    (out / f"{stem}.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(totals, indent=1))


if __name__ == "__main__":
    main()
