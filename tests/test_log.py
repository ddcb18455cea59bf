"""The on-disk log: what a recorder writes reads back the same, incrementally while written,
and bad paths or foreign files give a clear error."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch
from _logs import log_writer
from _loops import train_steps
from torch import nn

import gradwidget as gw
from gradwidget.logs.reader import LogReader, find_logs
from gradwidget.logs.writer import FILENAME, FORMAT_VERSION


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.Sigmoid(), nn.Linear(16, 3, bias=False))


def test_recorder_log_reads_back_as_the_recorded_history(tmp_path):
    model = _mlp()
    with gw.Recorder(model, log_dir=tmp_path / "exp1", act_every=5, budget=None) as rec:
        train_steps(model, rec, 23)
    logged, recorded = gw.open_log(tmp_path / "exp1"), rec.history
    assert logged.layers == recorded.layers == ("0", "2")
    assert set(logged.metrics) == set(recorded.metrics) >= {"grad_norm", "update_ratio"}
    for name in recorded.metrics:
        got, want = logged.series(name), recorded.series(name)
        np.testing.assert_array_equal(got.steps, want.steps)
        for field in ("last", "lo", "hi"):
            np.testing.assert_array_equal(getattr(got, field), getattr(want, field))


def test_log_describes_each_layer(tmp_path):
    model = _mlp()
    with gw.Recorder(model, log_dir=tmp_path / "exp1") as rec:
        train_steps(model, rec, 2)
    reader = LogReader(tmp_path / "exp1" / FILENAME)
    reader.poll()
    described = [(layer.name, layer.kind, layer.params) for layer in reader.layers]
    assert described == [("0", "Linear", 8 * 16 + 16), ("2", "Linear", 16 * 3)]
    reader.close()


def test_reader_sees_flushed_points_only_and_then_only_new_ones(tmp_path):
    writer, history = log_writer(tmp_path / "run", ("a", "b"), flush_s=3600)
    reader = LogReader(tmp_path / "run" / FILENAME)
    for step in range(5):
        history.append("grad_norm", step, [step, 2 * step])
    assert reader.poll() == 0 and len(reader.history) == 0  # buffered, not committed
    writer.flush()
    assert reader.poll() == 5
    version = reader.history.version
    history.append("grad_norm", 5, [5, 10])
    writer.flush()
    assert reader.poll() == 1 and reader.history.version == version + 1
    np.testing.assert_array_equal(reader.history.grad_norm[:, 1], [0, 2, 4, 6, 8, 10])
    assert not reader.status().finished
    writer.close()
    writer.close()  # idempotent
    assert reader.status().finished and reader.status().text().startswith("finished at step 5")
    reader.close()


def test_disk_use_per_step_is_as_documented(tmp_path):
    layers = tuple(str(i) for i in range(10))
    writer, history = log_writer(tmp_path / "run", layers)
    steps = 2000
    for step in range(steps):
        history.append("loss", step, 1.0)
        history.append("grad_norm", step, np.random.default_rng(step).random(10))
        history.append("nonfinite", step, np.zeros(10))
    writer.close()
    used = sum(f.stat().st_size for f in (tmp_path / "run").iterdir())
    assert used / steps <= 64 + 9 * len(layers)  # the module docstring's figure


def test_a_non_distributed_recorder_without_log_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    model = _mlp()
    with gw.Recorder(model) as rec:
        train_steps(model, rec, 2)
    assert list(tmp_path.iterdir()) == []


# -- clear errors -------------------------------------------------------------------------------


def _newer(folder: Path) -> Path:
    writer, _ = log_writer(folder, ("a",))
    writer.close()
    with sqlite3.connect(folder / FILENAME) as db:
        db.execute(f"PRAGMA user_version={FORMAT_VERSION + 1}")
    return folder


def _foreign(folder: Path) -> Path:
    folder.mkdir()
    with sqlite3.connect(folder / FILENAME) as db:
        db.execute("CREATE TABLE t (x)")
    return folder


def _text(folder: Path) -> Path:
    folder.mkdir()
    (folder / FILENAME).write_text("not a database, just text " * 40)
    return folder


def _two_runs(folder: Path) -> Path:
    for name in ("exp1", "exp2"):
        log_writer(folder / name, ("a",))[0].close()
    return folder


BAD_LOGS = {
    "missing": (lambda f: f / "nowhere", "does not exist"),
    "empty folder": (lambda f: f, "holds no gradwidget log"),
    "newer format": (_newer, "newer gradwidget"),
    "another sqlite file": (_foreign, "is not a gradwidget log"),
    "not a database": (_text, "is not a gradwidget log"),
    "several runs": (_two_runs, r"holds 2 runs \(exp1, exp2\)"),
}


@pytest.mark.parametrize("case", BAD_LOGS, ids=list(BAD_LOGS))
def test_open_log_explains_what_is_wrong(tmp_path, case):
    make, words = BAD_LOGS[case]
    path = make(tmp_path / "runs") if case != "empty folder" else make(tmp_path)
    with pytest.raises(gw.GradWidgetError, match=words):
        gw.open_log(path)


def test_a_folder_of_runs_lists_each(tmp_path):
    assert list(find_logs(_two_runs(tmp_path / "runs"))) == ["exp1", "exp2"]


def test_log_dir_must_be_a_folder_without_a_log(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(gw.GradWidgetError, match="is a file"):
        gw.Recorder(_mlp(), log_dir=tmp_path / "file")
    gw.Recorder(_mlp(), log_dir=tmp_path / "exp1").close()
    with pytest.raises(gw.GradWidgetError, match="already holds a gradwidget log"):
        gw.Recorder(_mlp(), log_dir=tmp_path / "exp1")


def test_a_recorder_made_before_its_parameters_were_replaced_says_so(tmp_path):
    model = _mlp()
    rec = gw.Recorder(model)
    model[0].weight = nn.Parameter(model[0].weight.detach().clone())  # as fully_shard does
    with pytest.raises(gw.GradWidgetError, match="after fully_shard"):
        train_steps(model, rec, 1)
    rec.close()
