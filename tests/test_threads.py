"""Thread counts chosen from the container's CPU quota, applied only around managed runs."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch
from torch import nn

from gradwidget.train import threads
from gradwidget.train.threads import (
    choose_threads,
    cpu_quota,
    managed_threads,
    usable_cpus,
    user_chose,
)


def _cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text + "\n")
    return tmp_path


@pytest.fixture
def eight_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "max 100000"}, None),
        ({"cpu.max": "50000 100000"}, 0.5),
        ({"cpu.max": "250000 100000"}, 2.5),
        ({"cpu/cpu.cfs_quota_us": "-1", "cpu/cpu.cfs_period_us": "100000"}, None),
        ({"cpu/cpu.cfs_quota_us": "150000", "cpu/cpu.cfs_period_us": "100000"}, 1.5),
        ({"cpu,cpuacct/cpu.cfs_quota_us": "400000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
         4.0),
        ({}, None),
        ({"cpu.max": "garbage"}, None),
    ],
)  # fmt: skip
def test_cpu_quota_from_cgroup_files(tmp_path: Path, files: dict, quota: float | None) -> None:
    assert cpu_quota(_cgroup(tmp_path, files)) == quota


@pytest.mark.usefixtures("eight_cores")
@pytest.mark.parametrize(
    ("cpu_max", "cpus"), [("max 100000", 8), ("50000 100000", 1), ("250000 100000", 2)]
)
def test_usable_cpus_is_the_affinity_capped_by_the_quota(
    tmp_path: Path, cpu_max: str, cpus: int
) -> None:
    assert usable_cpus(_cgroup(tmp_path, {"cpu.max": cpu_max})) == cpus


@pytest.mark.usefixtures("eight_cores")
def test_small_steps_get_one_thread_and_large_ones_stay_within_the_quota(tmp_path: Path) -> None:
    root = _cgroup(tmp_path, {"cpu.max": "300000 100000"})
    small = nn.Sequential(*[nn.Linear(64, 64) for _ in range(10)])  # the demo's size
    assert choose_threads(small, 64, root) == 1
    big = nn.Linear(4096, 4096)  # 16.8M parameters
    assert choose_threads(big, 64, root) == 3  # 1.1e9 multiply-adds: the quota decides
    assert choose_threads(big, 64, _cgroup(tmp_path / "free", {})) == 8
    assert choose_threads(big, 8, _cgroup(tmp_path / "free2", {})) == 1


def test_an_environment_variable_or_a_changed_count_means_the_user_chose() -> None:
    assert user_chose({"OMP_NUM_THREADS": "3"})
    assert user_chose({"MKL_NUM_THREADS": "1"})
    assert not user_chose({})
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(before + 1)
        assert user_chose({})
    finally:
        torch.set_num_threads(before)


def _in_thread(target):
    result = {}
    worker = threading.Thread(target=lambda: result.update(value=target()))
    worker.start()
    worker.join()
    return result["value"]


def test_managed_threads_set_the_count_inside_and_restore_it_after() -> None:
    before = torch.get_num_threads()

    def run() -> int:
        with managed_threads(before + 1, environ={}) as count:
            return count

    assert _in_thread(run) == before + 1
    assert _in_thread(torch.get_num_threads) == before  # threads started later: restored
    assert torch.get_num_threads() == before


def test_the_users_own_thread_keeps_its_count_during_a_managed_run() -> None:
    if "OpenMP" not in torch.__config__.parallel_info():
        pytest.skip("only torch's OpenMP backend keeps a count per thread")
    before = torch.get_num_threads()
    inside, release = threading.Event(), threading.Event()

    def run() -> None:
        with managed_threads(before + 1, environ={}):
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=run)
    worker.start()
    try:
        assert inside.wait(10)
        assert torch.get_num_threads() == before
    finally:
        release.set()
        worker.join()


def test_a_count_the_user_chose_is_left_alone() -> None:
    before = torch.get_num_threads()
    with managed_threads(before + 1, environ={"OMP_NUM_THREADS": str(before)}) as count:
        assert count == before
    assert torch.get_num_threads() == before


def test_a_managed_run_trains_on_one_thread_and_restores_the_count(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gradwidget.train.training import train

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "_AT_IMPORT", 2)  # as if torch had started with 2 threads
    torch.set_num_threads(2)
    seen = []

    def batches():
        for _ in range(3):
            seen.append(torch.get_num_threads())  # read in the training thread
            yield torch.randn(16, 4), torch.randint(0, 2, (16,))

    try:
        train(nn.Linear(4, 2), batches(), steps=3)
        assert seen == [1, 1, 1]  # a tiny step: one thread
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
