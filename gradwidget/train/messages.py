"""The sentences a :class:`~gradwidget.train.training.Run` leaves in ``run.message``.

Each says what happened in user words and, when something went wrong, what to try next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the run imports this module, not the other way round
    from .training import Run

__all__ = ["NO_BATCHES", "crashed", "diverged", "finished", "interrupted", "stopped"]

NO_BATCHES = (
    "The data yielded no batches, so there was nothing to train on. Check that the "
    "DataLoader or iterable is not empty (and not an iterator that was already used up)."
)


def finished(run: Run) -> str:
    """Normal end, or the data ran out before the planned number of steps."""
    done = f"Finished {run.step} steps"
    if run.total_steps is not None and run.step < run.total_steps:
        done = (
            f"The data ran out after {run.step} of {run.total_steps} steps (a one-shot "
            "iterator cannot be read twice: pass a list or a DataLoader to train longer)"
        )
    return f"{done} in {run.wall_time:.1f} s ({run.steps_per_s:.0f} steps/s); {_scores(run)}."


def stopped(run: Run) -> str:
    """Stop requested from outside (the stop button, ``run.stop()``)."""
    return f"Stopped after {run.step} of {_total(run)} steps; {_scores(run)}."


def interrupted(run: Run) -> str:
    """Ctrl-C (KeyboardInterrupt) during the loop."""
    return f"Interrupted (KeyboardInterrupt) after {run.step} of {_total(run)} steps."


def diverged(run: Run) -> str:
    """The loss became NaN or Inf."""
    lr = run.config.lr
    named = isinstance(run.config.optimizer, str)
    lower = f" (lr={lr:g} now; try lr={lr / 10:g})" if named else ""
    return (
        f"Training diverged: the loss became {run.loss} at step {run.step}. Lower the "
        f"learning rate{lower}, clip the gradients (torch.nn.utils.clip_grad_norm_), or try "
        "the BatchNorm remedy to keep activations in range. The history up to that step is kept."
    )


def crashed(run: Run, exc: BaseException) -> str:
    """An unexpected exception inside the loop, quoted so it can be searched for."""
    where = f"at step {run.step + 1}" if run.step else "before the first step"
    return f"Training failed {where}: {type(exc).__name__}: {exc}"


def _total(run: Run) -> str:
    return "?" if run.total_steps is None else str(run.total_steps)


def _scores(run: Run) -> str:
    parts = [f"loss {run.loss:.4g}" if run.loss is not None else "no loss yet"]
    if run.test_accuracy is not None:
        parts.append(f"test accuracy {run.test_accuracy:.1%}")
    elif run.accuracy is not None:
        parts.append(f"batch accuracy {run.accuracy:.1%}")
    return ", ".join(parts)
