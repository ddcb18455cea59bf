"""``python -m benchmarks.threads [--steps N] [--rounds R]``: the demo beside a competing load.

Runs ``python -m gradwidget demo`` in a fresh process while one busy process spins on a core,
alternating two settings in the same run: torch's inherited count (``OMP_NUM_THREADS`` set to
the usable CPUs, which gradwidget then leaves alone, as it did every run before) and the count
gradwidget chooses (no variable set). Prints JSON: seconds per round and the median ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from gradwidget.train.threads import usable_cpus

__all__ = ["demo_seconds", "main"]

_SPIN = "import time\nend = time.time() + {s}\nwhile time.time() < end: pass\n"


@contextmanager
def competing_load(seconds: float) -> Iterator[None]:
    """One process keeping one core busy for at most ``seconds``, stopped on exit."""
    spinner = subprocess.Popen([sys.executable, "-c", _SPIN.format(s=seconds)])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def demo_seconds(steps: int, threads: int | None) -> float:
    """Wall seconds of the demo in a fresh process (``threads``: set ``OMP_NUM_THREADS``)."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "gradwidget", "demo", "--steps", str(steps)]
    began = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    inherited, chosen = [], []
    with competing_load(3600):
        for _ in range(args.rounds):  # interleaved: the machine's load drifts
            inherited.append(demo_seconds(args.steps, usable_cpus()))
            chosen.append(demo_seconds(args.steps, None))
    result = {
        "steps": args.steps,
        "usable_cpus": usable_cpus(),
        "load_avg": os.getloadavg()[0],
        "inherited_s": [round(s, 2) for s in inherited],
        "chosen_s": [round(s, 2) for s in chosen],
        "speedup_median": round(float(np.median(np.divide(inherited, chosen))), 2),
    }
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
