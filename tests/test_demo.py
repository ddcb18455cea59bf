"""The headless demo tells the vanishing-gradient story; the summary rows it prints."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from gradwidget import History
from gradwidget.__main__ import VARIANTS, demo, main
from gradwidget.session.summary import (
    COLUMNS,
    RunSummary,
    default_threshold,
    format_table,
    summarize_history,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def story() -> tuple[list[RunSummary], str]:
    lines: list[str] = []
    rows = demo(echo=lines.append)
    return rows, "\n".join(lines)


def test_demo_contrasts_the_sigmoid_baseline_with_its_remedies(
    story: tuple[list[RunSummary], str],
) -> None:
    rows, _ = story
    by_remedies = {row.remedies: row for row in rows}
    assert len(rows) == 1 + len(VARIANTS)
    baseline = rows[0]
    assert baseline.remedies == ""
    assert baseline.accuracy < 0.3 and baseline.grad_ratio < 1e-5
    assert baseline.steps_to_threshold is None
    assert by_remedies["relu, he_init"].accuracy > 0.85
    assert by_remedies["batchnorm"].accuracy > 0.85
    assert by_remedies["relu"].accuracy < 0.3  # default init: ReLU alone stays stuck
    assert by_remedies["relu, he_init"].steps_to_threshold is not None


def test_demo_prints_the_diagnosis_and_the_table(story: tuple[list[RunSummary], str]) -> None:
    rows, text = story
    assert "vanishing" in text
    assert "final loss" in text and "grad ratio" in text
    for row in rows:
        assert row.run in text


def test_main_runs_the_demo_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--steps", "5"]) == 0
    out = capsys.readouterr().out
    assert "Comparison" in out and "BatchNorm" in out


def test_python_dash_m_gradwidget_rejects_an_unknown_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "gradwidget", "fly"], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "demo" in done.stderr


# -- summary rows, from a history whose numbers we chose ---------------------------------------


def _history() -> History:
    history = History(layers=("first", "last"))
    losses = [2.0, 1.5, 0.9, 1.2, 0.4]
    for step, loss in enumerate(losses):
        history.append("loss", step, loss)
        history.append("grad_norm", step, [1e-3 * (step + 1), 1.0])
    history.append("accuracy", 4, 0.5)
    history.append("test_accuracy", 4, 0.75)
    return history


def test_summary_reads_the_history() -> None:
    history = _history()
    row = summarize_history("run", ("relu", "he_init"), history, 1.25, threshold=1.0)
    assert row.run == "run" and row.remedies == "relu, he_init"
    assert row.final_loss == pytest.approx(0.4)
    assert row.accuracy == 0.75  # the test accuracy wins over the batch accuracy
    assert row.steps_to_threshold == 2
    assert row.grad_ratio == pytest.approx(np.median([1e-3 * k for k in range(1, 6)]))
    assert row.wall_time_s == 1.25
    assert default_threshold(history) == 1.0


def test_summary_of_an_empty_history_is_all_gaps() -> None:
    row = summarize_history("empty", (), History(layers=("a",)), 0.0, threshold=math.nan)
    assert math.isnan(row.final_loss) and math.isnan(row.accuracy)
    assert math.isnan(row.grad_ratio) and row.steps_to_threshold is None


def test_format_table_aligns_one_line_per_row() -> None:
    rows = [summarize_history(n, (), _history(), 1.0, 1.0) for n in ("a", "long name")]
    lines = format_table(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[2].startswith("a ") and lines[3].startswith("long name")
    assert "75.0%" in lines[2]
    assert len(COLUMNS) == 8
    assert "training" not in lines[0]  # shown only when a run used a training remedy
