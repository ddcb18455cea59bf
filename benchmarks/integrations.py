"""Overhead of the trainer callbacks: the same trainer with and without gradwidget's callback.

``python -m benchmarks.integrations [--rounds 7] [--steps 300] [--out benchmarks/results]``

Each round trains every configuration once, in a freshly shuffled order: no callback, the
callback recording only (``display=False``), and the callback with its panel (``display=True``;
no front end is connected, so this is the kernel-side cost of refreshing the widgets). A timer
callback, present in every configuration, measures the training loop from the start of its
first step to the trainer's train-end hook, so set-up is left out: the trainer's own, and the
callback's (building the recorder and the panel, once a fit, timed on its own by
:func:`setup_cost`). It reads the CPU time of this process (all its threads, the panel's
refresher too), not the wall clock: on a shared machine the wall clock also counts the time
other processes held the cores. A
configuration's ratio in a round is its time over the plain run's time in the same round; the
figure reported is the median over rounds with the 25th and 75th percentiles.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import random
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import gradwidget as gw

CONFIGS = ("plain", "record", "panel")


@dataclass(frozen=True)
class Case:
    """One row: ``run(config)`` trains once and returns the loop's CPU seconds; ``model()``
    builds the model the callback attaches to, for :func:`setup_cost`."""

    run: Callable[[str], float]
    model: Callable[[], torch.nn.Module]


class _Clock:
    """CPU seconds from the first step's start to train-end, for either framework's hooks."""

    def __init__(self) -> None:
        self.began: float | None = None
        self.seconds = 0.0

    def begin(self, *args: Any, **kwargs: Any) -> None:
        if self.began is None:
            self.began = time.process_time()

    def end(self, *args: Any, **kwargs: Any) -> None:
        assert self.began is not None, "the trainer ran no step"
        self.seconds = time.process_time() - self.began


def lightning_fit(depth: int, width: int, steps: int) -> Case:
    import lightning.pytorch as L

    from gradwidget.integrations.lightning import GradWidgetCallback

    data = gw.datasets.digits()
    pairs = torch.utils.data.TensorDataset(
        torch.as_tensor(data.x_train), torch.as_tensor(data.y_train)
    )

    class Classifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.net = gw.models.deep_mlp(depth=depth, width=width, activation="sigmoid")

        def training_step(self, batch: Any, index: int) -> torch.Tensor:
            return F.cross_entropy(self.net(batch[0]), batch[1])

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Timer(_Clock, L.Callback):
        on_train_batch_start, on_train_end = _Clock.begin, _Clock.end

    def run(config: str) -> float:
        timer = Timer()
        callbacks = [timer, *_callback(GradWidgetCallback, config)]
        loader = torch.utils.data.DataLoader(
            pairs, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
        )
        trainer = L.Trainer(
            max_steps=steps, callbacks=callbacks, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        trainer.fit(Classifier(), loader)
        return timer.seconds

    return Case(run, Classifier)


def transformers_train(layers: int, width: int, steps: int) -> Case:
    import transformers

    from gradwidget.integrations.transformers import GradWidgetCallback

    transformers.logging.set_verbosity_error()
    config = transformers.GPT2Config(
        vocab_size=256, n_positions=32, n_embd=width, n_layer=layers, n_head=4
    )
    tokens = torch.randint(0, 256, (1024, 32), generator=torch.Generator().manual_seed(0))
    rows = [{"input_ids": t, "labels": t} for t in tokens]

    class Timer(_Clock, transformers.TrainerCallback):
        on_step_begin, on_train_end = _Clock.begin, _Clock.end

    def run(config_name: str) -> float:
        timer = Timer()
        args = transformers.TrainingArguments(
            output_dir=tempfile.mkdtemp(), use_cpu=True, report_to=[], save_strategy="no",
            disable_tqdm=True, max_steps=steps, per_device_train_batch_size=16,
            logging_strategy="no", seed=0,
        )  # fmt: skip
        callbacks = [timer, *_callback(GradWidgetCallback, config_name)]
        transformers.Trainer(
            model=model(), args=args, train_dataset=rows, callbacks=callbacks
        ).train()
        return timer.seconds

    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return transformers.GPT2LMHeadModel(config)

    return Case(run, model)


def _callback(cls: type, config: str) -> list[Any]:
    if config == "plain":
        return []
    return [cls(display=config == "panel")]


def setup_cost(model: Callable[[], torch.nn.Module], repeats: int = 3) -> dict[str, float]:
    """Median CPU milliseconds of the callback's set-up before a fit's first step: the
    recorder alone (``record``), with the panel built and displayed (``panel``)."""
    from gradwidget.integrations._watch import GradientWatch

    costs: dict[str, list[float]] = {"record": [], "panel": []}
    for _ in range(repeats):
        for config in costs:
            watch, module = GradientWatch(config == "panel", {}), model()
            with contextlib.redirect_stdout(io.StringIO()):
                began = time.process_time()
                watch.start(module, show=True)
                costs[config].append(1000 * (time.process_time() - began))
                watch.finish()
    return {config: float(np.median(ms)) for config, ms in costs.items()}


def measure(run: Callable[[str], float], rounds: int) -> dict[str, dict[str, float]]:
    """Median (p25-p75) ratio of each configuration to the plain run of the same round."""
    run("plain")  # warm-up: first-call costs of the framework and of torch
    ratios: dict[str, list[float]] = {c: [] for c in CONFIGS if c != "plain"}
    plain_s: list[float] = []
    for _ in range(rounds):
        order = random.sample(CONFIGS, len(CONFIGS))
        with contextlib.redirect_stdout(io.StringIO()):  # a panel's repr, without a notebook
            seconds = {config: run(config) for config in order}
        plain_s.append(seconds["plain"])
        for config in ratios:
            ratios[config].append(seconds[config] / seconds["plain"])
    result = {
        c: dict(zip(("p25", "median", "p75"), np.percentile(r, [25, 50, 75]), strict=True))
        for c, r in ratios.items()
    }
    result["plain"] = {"seconds": float(np.median(plain_s))}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="per row; 3x on short rows")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    options = parser.parse_args()
    torch.set_num_threads(1)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")  # the frameworks' own deprecation notices
    # Runs of 300 steps take from half a second to 20 s; single rounds vary by +-0.05 and a
    # median of 7 by +-0.02, so the runs under 10 s get three times the rounds.
    cases = {
        "Lightning, 10-layer sigmoid MLP, width 64": (lightning_fit(10, 64, options.steps), 3),
        "Lightning, 10-layer sigmoid MLP, width 256": (lightning_fit(10, 256, options.steps), 3),
        "HF Trainer, GPT-2 2 blocks x 64, 32 tokens": (transformers_train(2, 64, options.steps), 3),
        "HF Trainer, GPT-2 4 blocks x 128, 32 tokens": (
            transformers_train(4, 128, options.steps),
            1,
        ),
    }
    lines = [
        f"Median ratio of the training loop's CPU time with the callback to without it, "
        f"{options.rounds} interleaved rounds ({3 * options.rounds} on the three shorter rows) of "
        f"{options.steps} steps (p25-p75), one torch thread, callback defaults (one 2 % time "
        "budget for gradients, activation samples and update ratios); the set-up before the "
        "first step (recorder / recorder and panel), once a fit, apart.",
        "",
        "| trainer and model | plain step (CPU time) | `display=False` "
        "| `display=True` (no front end) | set-up |",
        "|---|---|---|---|---|",
    ]
    for name, (case, more) in cases.items():
        result = measure(case.run, more * options.rounds)
        setup = setup_cost(case.model)
        step_ms = 1000 * result["plain"]["seconds"] / options.steps
        cells = [f"{step_ms:.2f} ms"] + [_cell(result[c]) for c in ("record", "panel")]
        cells.append(f"{setup['record']:.0f} / {setup['panel']:.0f} ms")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
        print(lines[-1], flush=True)
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "integrations.md").write_text("\n".join(lines) + "\n")


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['median']:.3f} ({stats['p25']:.2f}-{stats['p75']:.2f})"


if __name__ == "__main__":
    main()
