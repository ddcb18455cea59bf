"""How long the chain-rule explorer takes to answer a knob: one update at depth 10, 50 and 100.

``python -m benchmarks.explorer [--rounds 15] [--out benchmarks/results]``

Two times per depth, on one torch thread: ``profile_ms``, :func:`gradwidget.explorer.chain_profile`
alone (build the stack, one forward, the block-by-block backward), and ``update_ms``, a change of
the depth slider until the explorer has drawn it (``controls["depth"].value = d`` then
``wait()``: the thread start, the profile, the chart and sentence updates through ipywidgets'
dummy comm; no browser). Each round visits the depths in a fresh random order, from an idle
explorer (its ten-a-second throttle adds nothing); the figures are medians with quartiles.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

DEPTHS = (10, 50, 100)
TARGET_MS = 300.0  # the bound for depth 50 on 2 cores, so a dragged slider feels live


def latency(rounds: int = 15, depths: tuple[int, ...] = DEPTHS) -> dict[str, Any]:
    """Median, 25th and 75th percentile of both times per depth, in milliseconds."""
    import gradwidget as gw
    from gradwidget.explorer import chain_profile

    explorer = gw.explore(depth=depths[0])
    samples: dict[int, dict[str, list[float]]] = {d: {"profile": [], "update": []} for d in depths}
    rng = random.Random(0)
    try:
        for _ in range(rounds):
            for depth in rng.sample(depths, len(depths)):
                started = time.perf_counter()
                chain_profile(depth=depth)
                samples[depth]["profile"].append(time.perf_counter() - started)
                time.sleep(0.12)  # past the throttle's 0.1 s since the last redraw
                explorer.controls["depth"].value = depth + 1 if depth < 100 else depth - 1
                explorer.wait()
                time.sleep(0.12)
                started = time.perf_counter()
                explorer.controls["depth"].value = depth
                explorer.wait()
                samples[depth]["update"].append(time.perf_counter() - started)
    finally:
        explorer.close()
    rows = [
        {"depth": d, **{f"{k}_ms": _quartiles(v) for k, v in samples[d].items()}} for d in depths
    ]
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(),
        "load_avg": round(os.getloadavg()[0], 1),  # other processes widen the spread
        "rounds": rounds,
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
    }


def _quartiles(seconds: list[float]) -> dict[str, float]:
    p25, median, p75 = np.percentile(np.array(seconds) * 1000, [25, 50, 75])
    return {
        "median": round(float(median), 2),
        "p25": round(float(p25), 2),
        "p75": round(float(p75), 2),
    }


def markdown(result: dict[str, Any]) -> str:
    """The table of :func:`latency`."""
    out = [
        "# Chain-rule explorer: update latency\n",
        f"{result['date']}, {result['cores']} cores, load average {result['load_avg']}, "
        f"torch {torch.__version__} on {result['torch_threads']} thread(s), "
        f"{result['rounds']} rounds; median ms (25th–75th percentile).\n",
        "| depth | chain_profile | slider change to drawn |",
        "|---|---|---|",
    ]
    for row in result["rows"]:
        cells = [f"{q['median']:.1f} ({q['p25']:.1f}–{q['p75']:.1f})" for q in
                 (row["profile_ms"], row["update_ms"])]  # fmt: skip
        out.append(f"| {row['depth']} | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.explorer", description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the machine is shared; one thread keeps the numbers stable
    result = latency(args.rounds)
    path = Path(args.out) / "explorer.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
