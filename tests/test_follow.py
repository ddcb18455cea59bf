"""Following a log: the panel's charts and diagnosis redraw from what a writer commits, several
runs side by side, a stopped or killed writer is said so, and the terminal view exits cleanly."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _logs import log_writer

import gradwidget as gw
from gradwidget.__main__ import main
from gradwidget.history import History
from gradwidget.logs.reader import LogReader
from gradwidget.logs.writer import LogWriter

REPO = Path(__file__).resolve().parents[1]
LAYERS = ("0", "2", "4", "6")
# A textbook vanishing profile: the first layer's norm 1e-7 of the last one's.
VANISHING = np.array([1e-7, 1e-5, 1e-3, 1.0])


def _writer(folder: Path) -> tuple[LogWriter, History]:
    return log_writer(folder, LAYERS, flush_s=3600)  # flushed by the tests, when they choose


def _write(writer: LogWriter, history: History, steps: range, scale: float = 1.0) -> None:
    for step in steps:
        history.append("loss", step, 2.0 - step / 100)
        history.append("grad_norm", step, VANISHING * scale * (1 + step / 10))
    writer.flush()


@pytest.fixture
def follow():
    """Make follow views (polled by the test: their own thread waits 100 s) and close them."""
    made = []

    def make(path: Path, **options):
        made.append(gw.GradPanel.follow(path, refresh_hz=0.01, **options))
        return made[-1]

    yield make
    for view in made:
        view.close()


def test_the_view_redraws_charts_and_diagnosis_from_new_points(tmp_path, follow):
    writer, history = _writer(tmp_path / "exp1")
    _write(writer, history, range(12))
    view = follow(tmp_path / "exp1")
    version, first = view.version, np.array(view.live.dashboard.grad.lines.y)
    assert version >= 1 and first.size
    assert [f.kind for f in view.live.findings] == ["vanishing"]
    assert "running: step 11" in view.status.text
    _write(writer, history, range(12, 30))
    assert view.poll() and view.version == version + 1
    assert not np.array_equal(np.array(view.live.dashboard.grad.lines.y), first)
    assert not view.poll()  # nothing new, nothing redrawn
    writer.close()
    view.poll()
    assert "finished at step 29" in view.status.text
    assert not view._tick()  # a finished run needs no more polling


def test_the_view_says_when_no_new_data_comes(tmp_path, follow):
    writer, history = _writer(tmp_path / "exp1")
    _write(writer, history, range(5))
    view = follow(tmp_path / "exp1", stale_s=0.05)
    time.sleep(0.1)
    view.poll()
    assert "no new data for" in view.status.text
    writer.close()


def test_the_runs_of_a_folder_side_by_side(tmp_path, follow):
    for name, scale in (("exp1", 1.0), ("exp2", 1e3)):
        writer, history = _writer(tmp_path / "runs" / name)
        _write(writer, history, range(15), scale)
        writer.close()
    view = follow(tmp_path / "runs")
    assert list(view.compare.cells) == ["exp1", "exp2"]
    small = {n: np.nanmax(c.chart.lines.y) for n, c in view.compare.cells.items()}
    assert small["exp2"] > 100 * small["exp1"]  # each small chart draws its own run
    assert "exp1: finished" in view.status.text and "exp2: finished" in view.status.text
    shown = np.nanmax(view.live.dashboard.grad.lines.y)
    view.chooser.value = "exp2"
    assert view.shown == "exp2" and np.nanmax(view.live.dashboard.grad.lines.y) > 100 * shown
    view.compare.cells["exp1"].remove_button.click()
    assert list(view.compare.cells) == ["exp2"]


def test_following_a_bad_path_is_a_clear_error(tmp_path):
    with pytest.raises(gw.GradWidgetError, match="does not exist"):
        gw.GradPanel.follow(tmp_path / "nowhere")
    with pytest.raises(gw.GradWidgetError, match="holds no gradwidget log"):
        gw.GradPanel.follow(tmp_path)


_JOB = """
import sys, time, torch, gradwidget as gw
torch.set_num_threads(1); torch.manual_seed(0)
model = gw.models.deep_mlp(depth=4, width=16, activation="sigmoid")
opt = torch.optim.SGD(model.parameters(), lr=0.1)
rec = gw.Recorder(model, log_dir=sys.argv[1], budget=None)
x, y = torch.randn(32, 64), torch.randint(0, 10, (32,))
while True:  # until killed
    opt.zero_grad(); loss = torch.nn.functional.cross_entropy(model(x), y); loss.backward()
    rec.capture(loss); opt.step(); time.sleep(0.005)
"""


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


def test_a_killed_writer_leaves_every_flushed_step_and_is_said_stopped(tmp_path, follow, capsys):
    log = tmp_path / "exp1"
    job = subprocess.Popen([sys.executable, "-c", _JOB, str(log)], env=_env())
    try:
        seen = _wait_for_steps(log, job, 50)
    finally:
        job.kill()  # SIGKILL: no atexit, no close, no last flush
        job.wait()
    history = gw.open_log(log)
    assert len(history) >= seen
    assert history.steps.tolist() == list(range(len(history)))  # every step up to the flush
    assert "the writer stopped" in follow(log).status.text
    assert main(["follow", str(log), "--once"]) == 1
    assert "the writer stopped" in capsys.readouterr().out


def _wait_for_steps(log: Path, job: subprocess.Popen, steps: int) -> int:
    deadline = time.monotonic() + 60
    reader = None
    while time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.1)
        try:
            reader = reader or LogReader(log / "gradwidget.db")
        except gw.GradWidgetError:
            continue  # not created yet
        reader.poll()
        if len(reader.history) >= steps:
            reader.close()
            return len(reader.history)
    raise AssertionError(f"the job wrote no {steps} steps (exit code {job.poll()})")


def test_terminal_view_ends_cleanly_on_ctrl_c(tmp_path):
    writer, history = _writer(tmp_path / "exp1")  # this process writes: the writer is alive
    _write(writer, history, range(12))
    command = [sys.executable, "-m", "gradwidget", "follow", str(tmp_path / "exp1")]
    viewer = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = [viewer.stdout.readline().decode()]
    while first[-1] and "vanishing" not in first[-1]:  # until the diagnosis is on screen
        first.append(viewer.stdout.readline().decode())
    viewer.send_signal(signal.SIGINT)
    out, err = viewer.communicate(timeout=30)
    writer.close()
    assert first[0].startswith("exp1 · running: step 11") and "vanishing" in first[-1]
    assert viewer.returncode == 0, err.decode()
    assert "Stopped following" in out.decode() and "Traceback" not in err.decode()


def test_the_view_leaves_a_picture_of_its_runs_even_after_close(tmp_path, follow):
    from matplotlib.image import imread

    for name in ("ddp", "fsdp"):
        writer, history = _writer(tmp_path / name)
        _write(writer, history, range(12))
        writer.close()
    view = follow(tmp_path)
    view.close()
    shot = view.snapshot(dpi=40)
    assert imread(io.BytesIO(shot.png)).shape[:2] == (shot.height, shot.width)
    assert (shot.width, shot.height) == (480, 360)
