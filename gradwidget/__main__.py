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


_DESCRIPTION = """\
Per-layer gradient norms of PyTorch models, in the terminal.

  demo     train a 10-layer sigmoid network that cannot learn (vanishing gradients),
           diagnose it, retrain it with each fix and print the comparison
  follow   print the log of a training job (Recorder(..., log_dir=...)) as it grows

Run "python -m gradwidget COMMAND --help" for a command's options. In a notebook,
gradwidget.GradPanel(model, data) shows the same live, with charts.
"""
_DEMO = """\
Train a 10-layer sigmoid MLP on handwritten digits (it stays at chance: its gradients
vanish), print the diagnosis, then retrain copies from the same initial weights and data
order with each fix (ReLU, He init, BatchNorm and combinations) and print a comparison
table. Six runs of 600 steps take 10 to 30 s on a CPU; Ctrl-C stops it early.
"""
_FOLLOW = """\
Print the log that a training job writes (a Recorder made with log_dir=...) and redraw
it whenever new data arrives. Stops by itself
when every run has finished (exit status 1 if a writer vanished without closing its log);
press Ctrl-C to stop following at any time (the job itself goes on).
"""


def _parser() -> argparse.ArgumentParser:
    """The command line: each command described, with its defaults and how it stops."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="python -m gradwidget", description=_DESCRIPTION, formatter_class=formatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run_demo = commands.add_parser(
        "demo", help="vanishing gradients and their fixes, trained and compared in the terminal",
        description=_DEMO, formatter_class=formatter,
    )  # fmt: skip
    run_demo.add_argument(
        "--steps", type=int, default=600, metavar="N", help="SGD steps per run (default: 600)"
    )
    run_demo.add_argument(
        "--seed", type=int, default=0, metavar="S",
        help="seed of the initial weights, the data split and the data order (default: 0)",
    )  # fmt: skip
    run_follow = commands.add_parser(
        "follow", help="print a training job's log as it grows, until the job ends or Ctrl-C",
        description=_FOLLOW, formatter_class=formatter,
    )  # fmt: skip
    run_follow.add_argument(
        "path", help="a run's log_dir, or a folder of run folders (each run shown in turn)"
    )
    run_follow.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS",
        help="seconds between looks at the log (default: 1.0)",
    )  # fmt: skip
    run_follow.add_argument(
        "--once", action="store_true", help="print what is logged now and exit (default: off)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: ``gradwidget demo [--steps N] [--seed S]`` or
    ``gradwidget follow PATH [--interval S] [--once]``."""
    parser = _parser()
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
