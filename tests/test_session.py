"""The Session: train, retrain, compare, export, watch and follow, with no widget library.

torch is the oracle: every run starts from the model's own weights (compared tensor by tensor),
and what an own loop exports is what torch computed for its gradients.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _grad_oracle import layer_norms, own_layers
from _logs import log_writer
from torch import nn

import gradwidget as gw
from gradwidget.history import History
from gradwidget.session import Session


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return gw.models.deep_mlp(depth=4, width=16, activation="sigmoid", in_features=64)


@pytest.fixture(scope="module")
def data() -> gw.datasets.Dataset:
    return gw.datasets.digits()


@pytest.fixture
def sessions():
    made: list[Session] = []
    yield lambda s: made.append(s) or s
    for session in made:
        session.close()


# A script that blocks the UI packages before anything imports them, then drives a session
# the way a user's script would: train, retrain, compare, export, watch, follow.
_HEADLESS = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"ipywidgets", "bqplot", "IPython", "traitlets"}:
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
import torch
import gradwidget as gw
from gradwidget.session import Session
torch.manual_seed(0)
model = gw.models.deep_mlp(depth=4, width=16, activation="sigmoid", in_features=64)
session = Session(model, gw.datasets.digits(), steps=30, batch_size=32)
session.train(); session.wait()
session.retrain(["relu", "he_init"]); session.wait()
table = session.comparison()
written = session.export(sys.argv[1])
watching = Session.watching(gw.models.deep_mlp(depth=3, width=8, in_features=4))
x, y = torch.randn(16, 4), torch.randint(0, 10, (16,))
for _ in range(5):
    loss = torch.nn.functional.cross_entropy(watching.recorder.model(x), y)
    loss.backward(); watching.capture(loss)
watching.close()
print(json.dumps({
    "runs": list(table["run"]), "files": sorted(p.name for p in written),
    "watched_steps": len(watching.history().series("train_loss")),  # every step's loss
    "ui": sorted(m for m in sys.modules if m.split(".")[0] in {"ipywidgets", "bqplot"}),
}))
"""


def test_a_session_trains_compares_and_exports_without_any_widget_library(tmp_path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _HEADLESS, str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["runs"] == ["baseline", "ReLU + He init"]
    assert result["files"] == ["ReLU_He_init.json", "baseline.json", "comparison.csv"]
    assert result["watched_steps"] == 5 and result["ui"] == []


def test_every_run_starts_from_the_models_weights_and_leaves_the_model_alone(
    data, sessions
) -> None:
    model = _mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    starts = []

    def optimizer(params):
        params = list(params)
        starts.append([p.detach().clone() for p in params])
        return torch.optim.SGD(params, lr=0.1)

    session = sessions(Session(model, data, steps=10, batch_size=32, optimizer=optimizer))
    session.train()
    session.wait()
    session.retrain(["lower_lr"])  # a training fix: same model, same start
    session.wait()
    for start in starts:
        for param, value in zip(start, before.values(), strict=True):
            torch.testing.assert_close(param, value)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, before[key])
    assert [r.name for r in session.runs] == ["baseline", "Lower LR"]
    assert session.baseline() is session.runs[0].run


def test_refusals_are_sentences_and_change_nothing(data, sessions) -> None:
    session = sessions(Session(_mlp(), data, steps=2000, batch_size=32))
    session.train()
    with pytest.raises(gw.GradWidgetError, match="still running"):
        session.retrain(["relu"])
    with pytest.raises(gw.GradWidgetError, match="still running"):
        session.remove_run("baseline")
    session.stop()
    session.wait()
    with pytest.raises(gw.GradWidgetError, match="at least one fix"):
        session.retrain([])
    with pytest.raises(gw.GradWidgetError, match="nonsense"):
        session.retrain(["nonsense"])
    assert len(session.runs) == 1 and session.active is None
    with pytest.raises(gw.GradWidgetError, match="needs data"):
        Session(_mlp(), None)


def test_own_loop_export_writes_the_recorded_history_as_torch_computed_it(tmp_path) -> None:
    model = _mlp()
    panel = gw.GradPanel(model, recorder_options={"budget": None})  # every step captured
    layers = own_layers(model)
    x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    try:
        for _ in range(12):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            panel.capture(loss)
            expected = layer_norms(layers, panel.recorder.layers)
            opt.step()
        panel.wait()
        written = panel.export(tmp_path)
    finally:
        panel.close()
    assert sorted(p.name for p in written) == ["comparison.csv", "your_training_loop.json"]
    exported = History.from_json(tmp_path / "your_training_loop.json")
    assert len(exported) == 12
    np.testing.assert_allclose(exported.grad_norm[-1], expected, rtol=1e-5)
    rows = (tmp_path / "comparison.csv").read_text().strip().splitlines()
    assert len(rows) == 2 and rows[1].startswith("your training loop,")


def _log(folder: Path, steps: int = 6) -> Path:
    writer, history = log_writer(folder, ("a", "b"), flush_s=3600)
    for step in range(steps):
        history.append("loss", step, 2.0 - step / 10)
        history.append("grad_norm", step, np.array([1.0, 2.0]) * (step + 1))
    writer.flush()
    return folder / "gradwidget.db"


def _damage(db: Path, kind: str) -> None:
    with sqlite3.connect(db) as con:
        if kind == "truncated":
            con.execute("UPDATE points SET data = substr(data, 1, 3) WHERE rowid = 3")
        elif kind == "step":
            con.execute("UPDATE points SET step = 'seven' WHERE rowid = 3")
        else:
            con.execute("DROP TABLE points")


@pytest.mark.parametrize(
    ("kind", "fault"),
    [
        ("truncated", r"at step \d+ is truncated \(\d+ bytes\)"),
        ("step", r"is 'seven', not an integer"),
        ("table", "no such table: points"),
    ],
)
def test_a_damaged_log_is_refused_in_words_naming_the_file(tmp_path, kind, fault) -> None:
    db = _log(tmp_path / "run")
    _damage(db, kind)
    with pytest.raises(gw.GradWidgetError, match="damaged") as caught:
        gw.open_log(tmp_path / "run")
    assert str(db) in str(caught.value)
    assert caught.match(fault)


def test_a_following_panel_meeting_a_damaged_log_keeps_following_the_others(tmp_path) -> None:
    _damage(_log(tmp_path / "broken"), "truncated")
    _log(tmp_path / "healthy")
    panel = gw.GradPanel.follow(tmp_path, refresh_hz=0.01)
    try:
        assert "broken: The log" in panel.status.text and "is damaged" in panel.status.text
        assert "healthy: running: step 5" in panel.status.text
        panel.chooser.value = "healthy"
        assert len(panel.history("healthy")) == 6
        assert len(panel.history("broken")) == 1  # step 0, read before the damage, is kept
    finally:
        panel.close()


def test_one_panel_for_all_three_ways_in(tmp_path, data) -> None:
    _log(tmp_path / "run")
    made = [
        gw.GradPanel(_mlp(), data, steps=5),
        gw.GradPanel(_mlp()),
        gw.GradPanel.follow(tmp_path / "run", refresh_hz=0.01),
        gw.GradPanel(Session(_mlp(), data, steps=5)),
    ]
    try:
        assert all(type(p) is gw.GradPanel for p in made)
        assert [p.session.can_train for p in made] == [True, False, False, True]
        assert made[2].fixes is None and "gw-follow" in made[2]._dom_classes
    finally:
        for panel in made:
            panel.close()


def test_settings_rows_name_the_mode(data, sessions, tmp_path) -> None:
    _log(tmp_path / "run")
    managed = sessions(Session(_mlp(), data, steps=5))
    following = sessions(Session.following(tmp_path / "run"))
    assert dict(managed.settings_rows())["mode"].startswith("managed")
    assert dict(following.settings_rows())["mode"] == "following 1 log(s) on disk"
    assert repr(following).startswith("<Session following: 1 source(s)")
