"""Host synchronisations per training step on CUDA, counted with the torch profiler.

On a GPU every ``.item()`` or ``.cpu()`` of a device tensor blocks the host until the device has
caught up. The profiler sees them as ``cuda*Synchronize`` runtime calls and ``Memcpy DtoH``
copies; gradwidget aims at one copy per captured step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from .interleave import Contender, Lane
from .workloads import Workload, make_batches

__all__ = ["count_syncs"]

_SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def count_syncs(
    workload: Workload, contenders: list[Contender], steps: int, device: torch.device
) -> list[dict[str, Any]]:
    """Synchronising calls and device-to-host copies per step, for each contender.

    Parameters
    ----------
    workload : Workload
        Model and batch shape.
    contenders : list of Contender
        Configurations to profile; the plain loop is added first.
    steps : int
        Profiled steps per contender, after three unprofiled warm-up steps.
    device : torch.device
        A CUDA device (on CPU the counts are zero by construction).
    """
    batches = make_batches(workload, 8, device)
    rows = []
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    for contender in [Contender(None), *contenders]:
        lane = Lane(contender, workload, device)
        try:
            lane.run_block(batches, 0, 0, 3)
            with profile(activities=activities) as prof:
                lane.run_block(batches, 3, 3, steps)
            own = 3 if device.type == "cuda" else 0  # run_block's synchronize calls
            rows.append({"config": contender.key, **_per_step(prof.key_averages(), steps, own)})
        finally:
            lane.close()
    return rows


def _per_step(events: Any, steps: int, own_syncs: int) -> dict[str, float]:
    syncs = sum(e.count for e in events if e.key in _SYNC_CALLS)
    copies = sum(e.count for e in events if "DtoH" in e.key)
    # own_syncs: run_block synchronises at its start, after its first step and at its end.
    return {"syncs_per_step": (syncs - own_syncs) / steps, "dtoh_per_step": copies / steps}
