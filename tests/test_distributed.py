"""Two gloo processes on CPU, DDP then FSDP2 then HSDP, each writing a log: the numbers in the
log are torch's own (full gradients as FSDP produced them, full weights), and a view following
the log redraws while the job runs."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import _dist_jobs as jobs
import numpy as np
import pytest
import torch.multiprocessing as mp

import gradwidget as gw

pytestmark = pytest.mark.skipif(
    not __import__("torch").distributed.is_available(), reason="torch built without distributed"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def job(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the 2-process job once; meanwhile follow the DDP log as a notebook would."""
    folder = tmp_path_factory.mktemp("job")
    context = mp.start_processes(
        jobs.run, args=(str(folder), _free_port(), 0.1), nprocs=2, join=False,
        start_method="spawn",
    )  # fmt: skip
    seen = _follow_while_running(context, folder / "ddp" / "log")
    while not context.join(timeout=60):
        pass
    return {"folder": folder, "seen": seen}


def _follow_while_running(context, log: Path) -> list[tuple[int, bool, bytes]]:
    """(version, finished, chart data) of a following panel each time a poll brought data."""
    seen, view = [], None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not context.join(timeout=0.1):
        if view is None:
            try:
                view = gw.GradPanel.follow(log, refresh_hz=50)  # its own thread polls too
            except gw.GradWidgetError:
                continue  # the job has not created its log yet
        if view.poll() or view.version > (seen[-1][0] if seen else 0):
            lines = view.live.dashboard.grad.lines
            finished = view.session.logs["log"].status().ended
            seen.append((view.version, finished, np.asarray(lines.y).tobytes()))
    if view is not None:
        view.close()
    return seen


def _log_and_oracle(job: dict, mode: str) -> tuple[gw.History, dict]:
    folder = job["folder"] / mode
    return gw.open_log(folder / "log"), dict(np.load(folder / "oracle.npz"))


@pytest.mark.parametrize("mode", jobs.MODES)
def test_log_holds_the_full_gradient_norms(job, mode):
    history, oracle = _log_and_oracle(job, mode)
    assert history.steps.tolist() == list(range(jobs.STEPS))
    np.testing.assert_allclose(history.grad_norm, oracle["grad_norm"], rtol=1e-5)
    np.testing.assert_allclose(history.loss, oracle["loss"], rtol=1e-6)  # rank 0's batch


@pytest.mark.parametrize("mode", jobs.MODES)
def test_update_ratios_and_activations_are_recorded(job, mode):
    history, oracle = _log_and_oracle(job, mode)
    weight, ratio = history.series("weight_norm"), history.series("update_ratio")
    sampled = list(range(0, jobs.STEPS - 1, jobs.ACT_EVERY))
    assert weight.steps.tolist() == sampled
    np.testing.assert_allclose(weight.last, oracle["weight_norm"][sampled], rtol=1e-5)
    expected = oracle["update_norm"][sampled] / oracle["weight_norm"][sampled]
    np.testing.assert_allclose(ratio.last, expected, rtol=1e-4)
    activity = history.series("act_std").last
    assert activity.shape == (len(sampled), 3) and np.isfinite(activity).all()


def test_ddp_records_on_rank_0_only(job):
    ranks = [json.loads((job["folder"] / "ddp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["recorded"] == jobs.STEPS and ranks[1]["recorded"] == 0


def test_fsdp_every_rank_ends_a_capture_with_the_same_numbers(job):
    # Every rank joins the one collective, so each holds the global numbers.
    ranks = [json.loads((job["folder"] / "fsdp" / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["recorded"] == ranks[1]["recorded"] == jobs.STEPS
    assert (job["folder"] / "fsdp" / "log" / "gradwidget.db").is_file()


@pytest.mark.parametrize("mode", jobs.MODES)
def test_a_nan_in_one_ranks_shard_is_counted(job, mode):
    rank0 = json.loads((job["folder"] / mode / "rank0.json").read_text())
    # Sharded: rank 1's NaN reaches rank 0's record through the second, rare collective.
    # DDP: each rank holds whole gradients; rank 1's own corruption never reaches rank 0.
    assert rank0["poisoned"] == ([0.0, 0.0, 0.0] if mode == "ddp" else [1.0, 0.0, 0.0])


def test_parameters_sharded_over_two_mesh_dimensions_are_refused(job):
    assert "tensor parallelism" in (job["folder"] / "two_dims.txt").read_text()


def test_a_following_view_redraws_while_the_job_writes(job):
    live = [(version, data) for version, finished, data in job["seen"] if not finished]
    assert len({version for version, _ in live}) >= 2, job["seen"]
    assert len({data for _, data in live}) >= 2  # the chart's data changed, not just a counter
