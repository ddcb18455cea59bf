"""How many torch threads the runs the panel trains use: chosen, not inherited.

torch counts the cores the process may run on (``os.sched_getaffinity``), not the CPU quota of
its container: under Binder's quota the tutorials' small models then run more threads than
there are CPUs to run them, and beside any other busy process a small step spends most of its
time waiting for its threads (docs/performance.md: ``python -m gradwidget demo`` beside one
busy process took 32 s with torch's default 2 threads, 8.8 s with one).

:func:`choose_threads` takes the smaller of the CPUs the container may use (cgroup v2
``cpu.max``, v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``, the affinity mask) and what the
step can use (one thread where a step is too small to gain from more).

:func:`managed_threads` applies the choice around a managed run without surprising the user's
code in the same kernel: nothing is changed when the user chose a count (``OMP_NUM_THREADS`` or
``MKL_NUM_THREADS`` set, or ``torch.set_num_threads`` called since gradwidget was imported);
the count is set in the training thread, where torch's OpenMP backend keeps it (the user's
thread keeps its own), and the previous count is restored when the last managed run ends (it
is also the count new threads start with).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

__all__ = ["choose_threads", "cpu_quota", "managed_threads", "usable_cpus", "user_chose"]

CGROUP = Path("/sys/fs/cgroup")
# A step of fewer multiply-adds than this (parameters x batch size: a dense forward pass)
# gains nothing from a second thread; above it, one thread per this much work. On a shared
# 2-core machine a second thread slowed every MLP step measured (docs/performance.md).
WORK_PER_THREAD = 1e8
_V1_DIRS = ("cpu", "cpu,cpuacct", "cpuacct,cpu")
_USER_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_AT_IMPORT = torch.get_num_threads()  # torch's own count, unless the user set one before

_lock = threading.Lock()
_active = 0  # managed runs in progress
_restore: int | None = None  # the count to put back when the last one ends (None: leave it)


def cpu_quota(root: Path = CGROUP) -> float | None:
    """CPUs the container may use per scheduling period (None: no quota).

    Reads cgroup v2 ``cpu.max`` (``"max 100000"``: none; ``"50000 100000"``: half a CPU),
    else cgroup v1 ``cpu.cfs_quota_us`` (-1: none) over ``cpu.cfs_period_us``.
    """
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for name in _V1_DIRS:
        try:
            quota_us = int((root / name / "cpu.cfs_quota_us").read_text())
            period_us = int((root / name / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us
    return None


def usable_cpus(root: Path = CGROUP) -> int:
    """CPUs this process may use: its affinity mask, capped by the container's quota."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    quota = cpu_quota(root)
    if quota is not None:  # 1.5 CPUs: a second thread would be throttled half the time
        cpus = min(cpus or 1, math.floor(quota))
    return max(1, cpus or 1)


def choose_threads(model: nn.Module, batch_size: int, root: Path = CGROUP) -> int:
    """Threads for training ``model`` on batches of ``batch_size``, within the CPU quota."""
    work = batch_size * sum(p.numel() for p in model.parameters())
    wanted = max(1, math.floor(work / WORK_PER_THREAD))
    return min(usable_cpus(root), wanted)


def user_chose(environ: Mapping[str, str] = os.environ) -> bool:
    """True when the user has picked a thread count: leave it alone then."""
    return any(environ.get(v) for v in _USER_VARS) or torch.get_num_threads() != _AT_IMPORT


@contextmanager
def managed_threads(count: int, environ: Mapping[str, str] = os.environ) -> Iterator[int]:
    """Train with ``count`` torch threads inside the block (see the module's notes).

    Yields the count in use, which is the user's own where they chose one.
    """
    global _active, _restore
    with _lock:
        if _active == 0:
            _restore = None if user_chose(environ) else torch.get_num_threads()
        _active += 1
        managed = _restore is not None
    if managed:
        torch.set_num_threads(count)
    try:
        yield torch.get_num_threads()
    finally:
        with _lock:
            _active -= 1
            if _active == 0 and _restore is not None:
                torch.set_num_threads(_restore)
                _restore = None
