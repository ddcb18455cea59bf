"""Where the time of a monitored step goes: cProfile over a few steps, heaviest entries first."""

from __future__ import annotations

import cProfile
import io
import pstats

import torch

from .interleave import Contender, Lane
from .workloads import Workload, make_batches

__all__ = ["profile_contender"]


def profile_contender(
    workload: Workload, contender: Contender, steps: int, device: torch.device, top: int = 15
) -> str:
    """The ``top`` functions by own time over ``steps`` steps, as pstats prints them."""
    lane = Lane(contender, workload, device)
    batches = make_batches(workload, 8, device)
    try:
        lane.run_block(batches, 0, 0, 10)  # warm-up: first-call costs and the adaptive interval
        profiler = cProfile.Profile()
        profiler.enable()
        lane.run_block(batches, 10, 10, steps)
        profiler.disable()
    finally:
        lane.close()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(top)
    return _trim(out.getvalue())


def _trim(text: str) -> str:
    """Keep the table, drop pstats' preamble; shorten site-packages paths."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(line.replace(str(_site()), "…") for line in lines[start:] if line.strip())


def _site() -> str:
    import site

    return site.getsitepackages()[0]
