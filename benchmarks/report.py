"""Write benchmark results as a markdown report and a JSON file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .overhead import LABELS

__all__ = ["markdown", "write"]


def write(results: dict[str, Any], out_dir: Path, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.md`` and ``<stem>.json`` under ``out_dir``; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    md, js = out_dir / f"{stem}.md", out_dir / f"{stem}.json"
    md.write_text(markdown(results))
    js.write_text(json.dumps(results, indent=1, default=str))
    return md, js


def markdown(results: dict[str, Any]) -> str:
    """The whole report: headline, targets, details, panel, memory, CUDA, profiles."""
    meta = results["meta"]
    parts = [
        "# gradwidget benchmarks\n",
        " | ".join(f"{k}: {v}" for k, v in meta.items()) + "\n",
        _headline(results["overhead"]),
        _targets(results["targets"]),
        _details(results["overhead"]),
        _panel(results),
        _memory(results),
        _cuda(results.get("cuda_syncs")),
        _profiles(results.get("profiles", {})),
    ]
    return "\n".join(p for p in parts if p)


def _cell(row: dict[str, Any]) -> str:
    mark = "†" if row["amortized"] else ""
    return f"{row['median']:.3f}{mark} ({row['p25']:.2f}–{row['p75']:.2f})"


def _headline(rows: list[dict[str, Any]]) -> str:
    out = [
        "## Run-time overhead: configuration × sampling interval\n",
        "Median ratio of a monitored step to a plain step (IQR over interleaved rounds). "
        "The interval is the tool's own: `act_every` for gradwidget (its shortest activation "
        "interval; with the budget on, gradient captures, activation samples and update ratios "
        "are spaced together to hold it, measured after the Recorder settled), `log_freq` for "
        "W&B, "
        "every k-th step for the others. † charged per interval from blocks that start with a "
        "sampled step (interval longer than a block).\n",
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == model]
        intervals = sorted({r["interval"] for r in mine})
        cells = {(r["kind"], r["interval"]): r for r in mine}
        plain_ms = mine[0]["plain_step_ms"]
        out.append(f"**{model}** (plain step {plain_ms:.2f} ms)\n")
        out.append("| configuration | " + " | ".join(f"k={k}" for k in intervals) + " |")
        out.append("|---|" + "---|" * len(intervals))
        for kind, label in LABELS.items():
            row = [_cell(cells[kind, k]) if (kind, k) in cells else "·" for k in intervals]
            out.append(f"| {label} | " + " | ".join(row) + " |")
        out.append("")
    return "\n".join(out)


def _targets(targets: list[dict[str, Any]]) -> str:
    out = ["## Targets\n", "| what | target | measured | verdict |", "|---|---|---|---|"]
    for t in targets:
        verdict = {True: "met", False: "**MISSED**", None: "not measured"}[t["met"]]
        out.append(f"| {t['what']} | {t['target']} | {t['measured']} | {verdict} |")
    return "\n".join(out) + "\n"


def _details(rows: list[dict[str, Any]]) -> str:
    out = [
        "## All configurations\n",
        "| model | configuration | k | median | IQR | p10–p90 | step ms | grad_every | "
        "act_interval | transfers / 100 steps |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        every, acts, moved = (
            "" if r.get(key) is None else f"{r[key]:.{digits}f}"
            for key, digits in (("grad_every", 0), ("act_interval", 0), ("transfers_per_100", 1))
        )
        out.append(
            f"| {r['model']} | {LABELS[r['kind']]} | {r['interval']} | {r['median']:.3f} | "
            f"{r['p25']:.3f}–{r['p75']:.3f} | {r['p10']:.3f}–{r['p90']:.3f} | "
            f"{r['step_ms']:.2f} | {every} | {acts} | {moved} |"
        )
    return "\n".join(out) + "\n"


def _panel(results: dict[str, Any]) -> str:
    out = ["## Panel\n"]
    for key, title in (
        ("panel_throughput", "Panel-managed training vs a plain loop"),
        ("ui_traffic", "UI traffic under an own loop at full speed"),
        ("ui_scale", "One redraw and its traffic at 10, 100 and 500 layers"),
        ("first_chart", "Time from `panel.train()` to the first chart update"),
    ):
        out.append(f"**{title}**: `{_compact(results.get(key))}`\n")
    return "\n".join(out)


def _memory(results: dict[str, Any]) -> str:
    out = ["## Memory\n"]
    growth = results.get("history_memory")
    if isinstance(growth, dict) and "checkpoints" in growth:
        out += ["| steps | traced heap (bytes) |", "|---|---|"]
        out += [f"| {s:,} | {b:,} |" for s, b in growth["checkpoints"]]
        out.append(f"\nGrowth after the series filled: {growth['growth_after_full']:,} bytes.\n")
    else:
        out.append(f"History: `{_compact(growth)}`\n")
    out.append(f"Long recorded run: `{_compact(results.get('run_memory'))}`\n")
    return "\n".join(out)


def _cuda(rows: list[dict[str, Any]] | None) -> str:
    if not rows:
        return "## CUDA\n\nNot measured: no CUDA device in this run (`--device cuda`).\n"
    out = ["## CUDA host synchronisations per step\n", "| config | syncs | DtoH copies |"]
    out.append("|---|---|---|")
    out += [
        f"| {r['config']} | {r['syncs_per_step']:.2f} | {r['dtoh_per_step']:.2f} |" for r in rows
    ]
    return "\n".join(out) + "\n"


def _profiles(profiles: dict[str, dict[str, Any]]) -> str:
    return "\n".join(_profile(name, p) for name, p in profiles.items())


def _profile(name: str, profile: dict[str, Any]) -> str:
    if "error" in profile:
        return f"## Profile: {name}\n\nNot measured: {profile['error']}\n"
    phases = profile["by_phase"]
    out = [
        f"## Profile: {name}\n",
        f"Step time by phase (`step % act_every`), median ms; grad_every settled at "
        f"{phases['grad_every']}; recorded/plain over all steps: {phases['ratio_of_sums']:.3f}.\n",
        "| phase | plain | recorded | inside capture |",
        "|---|---|---|---|",
    ]
    out += [
        f"| {p['phase']} | {p['plain_ms']:.2f} | {p['recorded_ms']:.2f} | {p['capture_ms']:.3f} |"
        for p in phases["phases"]
    ]
    out.append(
        f"\ncProfile, gradwidget functions by cumulative time:\n\n```\n{profile['cprofile']}\n```\n"
    )
    return "\n".join(out)


def _compact(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_compact(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
