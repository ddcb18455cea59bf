"""``python -m gradwidget demo``: the whole story in a terminal, no notebook needed.

``python -m gradwidget follow runs/exp1``: the log of a running job, live, as text.

A 10-layer sigmoid MLP stays at chance on handwritten digits because its gradients vanish;
the diagnosis says so, and the remedies, trained from the same initial weights in the same
data order, show which fixes work.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Callable, Sequence

import torch

from . import datasets, models
from .diagnose.findings import Finding
from .errors import GradWidgetError
from .logs.console import follow
from .session import Session
from .session.summary import RunSummary, default_threshold, format_table

__all__ = ["VARIANTS", "demo", "main"]

# Remedy combinations trained after the baseline; ReLU alone shows that init matters too.
VARIANTS: tuple[tuple[str, ...], ...] = (
    ("relu",),
    ("he_init",),
    ("batchnorm",),
    ("relu", "he_init"),
    ("relu", "batchnorm", "he_init"),
)


def demo(
    steps: int = 600, seed: int = 0, echo: Callable[[str], object] = print
) -> list[RunSummary]:
    """Train the sigmoid baseline and its remedied copies, print diagnosis and comparison.

    Parameters
    ----------
    steps : int
        SGD steps per run (lr 0.1, batch 64).
    seed : int
        Seed of the initial weights, the data split and the data order.
    echo : callable
        Where the text goes (``print`` by default).

    Returns
    -------
    list of RunSummary
        The baseline first, then one row per entry of :data:`VARIANTS`.
    """
    data = datasets.digits(seed=seed)
    torch.manual_seed(seed)
    model = models.deep_mlp(depth=10, width=64, activation="sigmoid")
    session = Session(model, data, steps=steps, lr=0.1, batch_size=64, seed=seed)
    echo(f"Training a 10-layer sigmoid MLP on {data!r} ({steps} SGD steps, lr 0.1) ...")
    try:
        baseline = session.train()
        session.wait()
        echo(baseline.message)
        echo(_diagnosis_text(session.findings()))
        for names in VARIANTS:
            run = session.retrain(names)
            echo(f"Retraining with {run.name} from the same initial weights and data order ...")
            session.wait()
        rows = session.summaries()
    finally:
        session.close()
    threshold = default_threshold(session.history("baseline"))
    echo(f"\nComparison (steps to bar: first step with loss <= {threshold:.3g}):")
    echo(format_table(rows))
    return rows


def _diagnosis_text(findings: Sequence[Finding]) -> str:
    if not findings:
        return "Diagnosis: no gradient problem found."
    blocks = [f"Diagnosis ({len(findings)} finding{'s' * (len(findings) > 1)}):"]
    for finding in findings:
        text = f"[{finding.severity.name}] {finding.kind}: {finding.message}"
        blocks.append(textwrap.fill(text, width=100, subsequent_indent="    "))
    return "\n".join(blocks)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: ``gradwidget demo [--steps N] [--seed S]`` or
    ``gradwidget follow PATH [--interval S] [--once]``."""
    parser = argparse.ArgumentParser(prog="gradwidget", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    run_demo = commands.add_parser("demo", help="vanishing gradients and their remedies, headless")
    run_demo.add_argument("--steps", type=int, default=600, help="SGD steps per run (600)")
    run_demo.add_argument("--seed", type=int, default=0, help="seed of weights and data (0)")
    run_follow = commands.add_parser("follow", help="a job's log (log_dir=...), live, as text")
    run_follow.add_argument("path", help="a run's log_dir, or a folder of run folders")
    run_follow.add_argument("--interval", type=float, default=1.0, help="seconds between polls")
    run_follow.add_argument("--once", action="store_true", help="print once and exit")
    args = parser.parse_args(argv)
    if args.command == "follow":
        try:
            return follow(args.path, interval=args.interval, once=args.once)
        except GradWidgetError as why:
            print(f"gradwidget: {why}", file=sys.stderr)
            return 2
    demo(steps=args.steps, seed=args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
