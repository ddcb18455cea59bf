"""``python -m gradwidget follow runs/exp1``: a running job's log as live text in a terminal."""

from __future__ import annotations

import math
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..diagnose.rules import diagnose
from .reader import LogReader, LogStatus, find_logs

__all__ = ["follow", "render"]

_CLEAR = "\x1b[H\x1b[J"  # cursor home, clear to the end: redraw in place on a terminal
_BAR = 24  # characters of the largest norm's bar
_DECADES = 8  # the bars span this many powers of ten below the largest norm
_MAX_ROWS = 16  # layers listed at most; the middle of a deeper model is elided


def follow(
    path: str | Path,
    *,
    interval: float = 1.0,
    once: bool = False,
    stale_s: float = 5.0,
    echo: Callable[[str], object] | None = None,
) -> int:
    """Print the logs at ``path`` and redraw whenever new data arrives, until Ctrl-C.

    Parameters
    ----------
    path : str or Path
        A run's ``log_dir``, or a folder of run folders (each run printed in turn).
    interval : float
        Seconds between polls.
    once : bool
        Print what is there now and return.
    stale_s : float
        After this many seconds without new data the text says so.
    echo : callable, optional
        Where the text goes (default: standard output, flushed, redrawn in place on a
        terminal).

    Returns
    -------
    int
        Exit status: 0 when every run finished (or on Ctrl-C or ``once``), 1 when a writer
        stopped without closing its log.
    """
    readers = {name: LogReader(file) for name, file in find_logs(path).items()}
    redraw = _CLEAR if echo is None and sys.stdout.isatty() else ""
    echo = echo or _print
    shown = None
    try:
        while True:
            for reader in readers.values():
                while reader.poll():  # catch up with a long log before drawing
                    pass
            statuses = {name: r.status() for name, r in readers.items()}
            text = "\n\n".join(render(n, readers[n], s, stale_s) for n, s in statuses.items())
            if text != shown:
                echo(redraw + text)
                shown = text
            ended = [s.finished or s.writer_gone for s in statuses.values()]
            if once or all(ended):
                return int(any(s.writer_gone and not s.finished for s in statuses.values()))
            time.sleep(interval)
    except KeyboardInterrupt:
        echo("\nStopped following (the job itself goes on).")
        return 0
    finally:
        for reader in readers.values():
            reader.close()


def _print(text: str) -> None:
    print(text, flush=True)  # piped into a file or `tee`, each redraw shows at once


def render(name: str, reader: LogReader, status: LogStatus, stale_s: float = 5.0) -> str:
    """The text block of one run: status, latest loss, per-layer gradient norms, diagnosis."""
    layers = reader.layers
    params = sum(layer.params for layer in layers)
    head = f"{name} · {status.text(stale_s)} · {len(layers)} layers, {params:,} parameters"
    history = reader.history
    if len(history) == 0:
        return head
    loss = history.loss_curve()
    norms = history.grad_norm[-1]
    lines = [head, f"  loss {loss.last[-1, 0]:.4g} at step {int(loss.steps[-1])}"]
    lines += _layer_rows(reader, norms)
    findings = diagnose(history)
    for finding in findings:
        text = f"[{finding.severity.name}] {finding.kind}: {finding.message}"
        lines.append(textwrap.fill(text, 100, initial_indent="  ", subsequent_indent="      "))
    if not findings:
        lines.append("  diagnosis: no gradient problem found")
    return "\n".join(lines)


def _layer_rows(reader: LogReader, norms: np.ndarray) -> list[str]:
    """One row per layer: name, type, gradient norm and a bar on a log scale (a bar shorter
    by a third of its length: a norm about 1000x smaller)."""
    width = max(len("layer"), *(len(layer.name) for layer in reader.layers))
    kinds = max(len("type"), *(len(layer.kind) for layer in reader.layers))
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log10(np.where(norms > 0, norms, np.nan))
    high = np.nanmax(logs) if np.isfinite(logs).any() else 0.0
    rows = [f"  {'layer':<{width}}  {'type':<{kinds}}  grad norm"]
    for i, (layer, norm, lg) in enumerate(zip(reader.layers, norms, logs, strict=True)):
        if len(norms) > _MAX_ROWS and _MAX_ROWS // 2 <= i < len(norms) - _MAX_ROWS // 2:
            if i == _MAX_ROWS // 2:
                rows.append(f"  … {len(norms) - _MAX_ROWS} more layers")
            continue
        share = 0.0 if not math.isfinite(lg) else 1 + (lg - high) / _DECADES
        bar = "█" * max(1, round(share * _BAR)) if share > 0 else "·"
        rows.append(f"  {layer.name:<{width}}  {layer.kind:<{kinds}}  {norm:9.3g}  {bar}")
    return rows
