"""The benchmark scripts run end to end and write complete results; no timing is asserted.

Gradient monitors are checked against torch itself; the quick run is checked for shape and
completeness only, since its numbers depend on the machine.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from benchmarks.interleave import Contender, _timings
from benchmarks.monitors import Floor, ItemLoop, LightningGradNorm, WandbGradients
from benchmarks.overhead import LABELS
from benchmarks.ui import CommTap

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {"gw_default@10", "gw_full@1", "item_loop@1", "lightning@1", "wandb@1", "wandb@100"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, "-m", "benchmarks", "--quick", "--models", "mlp10", "--rounds", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([*cmd, "--out", str(out)], cwd=ROOT, env=env, check=True, timeout=600)
    return json.loads((out / "cpu-quick.json").read_text()), (out / "cpu-quick.md").read_text()


@pytest.fixture
def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def _backward(model: nn.Module) -> torch.Tensor:
    loss = nn.functional.cross_entropy(model(torch.randn(8, 6)), torch.randint(3, (8,)))
    loss.backward()
    return loss


def test_quick_run_has_every_section_without_errors(quick: tuple[dict, str]) -> None:
    results, _ = quick
    failed = {k: v for k, v in results.items() if isinstance(v, dict) and "error" in v}
    assert failed == {}
    assert {"overhead", "panel_throughput", "ui_traffic", "first_chart", "history_memory"} <= set(
        results
    )
    assert results["meta"]["torch"] == torch.__version__


def test_quick_run_times_every_required_configuration(quick: tuple[dict, str]) -> None:
    rows = quick[0]["overhead"]
    assert REQUIRED | {"floor@1"} <= {f"{r['kind']}@{r['interval']}" for r in rows}
    for r in rows:
        assert r["median"] > 0 and math.isfinite(r["median"])
        assert r["p10"] <= r["p25"] <= r["median"] <= r["p75"] <= r["p90"]
        if r["kind"].startswith("gw_"):  # the Recorder's own sampling state is reported
            assert r["grad_every"] >= 1 and r["act_interval"] >= r["interval"]
            assert 0 < r["transfers_per_100"] <= 100


def test_quick_report_has_headline_and_verdicts(quick: tuple[dict, str]) -> None:
    results, text = quick
    assert "configuration × sampling interval" in text
    assert all(label in text for label in LABELS.values())
    assert results["targets"] and all(t["met"] in (True, False) for t in results["targets"])


def test_quick_run_counts_ui_traffic_and_memory(quick: tuple[dict, str]) -> None:
    results = quick[0]
    assert results["ui_traffic"]["steps_per_s"] > 0
    assert results["ui_traffic"]["messages_per_s"] > 0  # the panel did send chart updates
    assert math.isfinite(results["first_chart"]["seconds"]["median"])
    steps = [s for s, _ in results["history_memory"]["checkpoints"]]
    assert steps == sorted(steps) and steps[-1] == 25_000
    assert results["run_memory"]["peak_rss_mb"] >= results["run_memory"]["rss_end_mb"] > 0


def test_item_loop_and_lightning_match_torch_norms(model: nn.Module) -> None:
    loop, lightning = ItemLoop(model, 1), LightningGradNorm(model, 1)
    _backward(model)
    expected = [torch.linalg.vector_norm(p.grad).item() for p in model.parameters()]
    assert loop.read() == pytest.approx(expected, rel=1e-6)
    total = nn.utils.clip_grad_norm_(model.parameters(), math.inf)
    assert lightning.read()["grad_2.0_norm_total"].item() == pytest.approx(total.item(), rel=1e-5)


def test_floor_reads_every_gradient_entry(model: nn.Module) -> None:
    _backward(model)
    expected = sum(p.grad.double().sum().item() for p in model.parameters())
    assert Floor(model, 1).read() == pytest.approx(expected, abs=1e-5)


def test_wandb_histograms_only_on_logged_steps_and_unhooks(model: nn.Module) -> None:
    monitor = WandbGradients(model, every=2)
    monitor.begin(1)
    _backward(model)
    assert monitor.logged == {}
    monitor.begin(2)
    model.zero_grad()
    _backward(model)
    for name, p in model.named_parameters():
        counts, edges = monitor.logged[name]
        assert sum(counts) == p.numel() and len(counts) == 64
        assert edges[0] == pytest.approx(p.grad.min().item())
        assert edges[-1] == pytest.approx(p.grad.max().item())
    monitor.close()
    assert all(not p._backward_hooks for p in model.parameters())


def test_ratio_uses_plain_blocks_around_and_amortizes_rare_samples() -> None:
    def lane(kind: str, interval: int, blocks: list, reference: list) -> SimpleNamespace:
        return SimpleNamespace(
            contender=Contender(kind, interval), blocks=blocks, reference=reference, extra=dict
        )

    # Blocks of 10 steps around a plain step of 1 s. Sampled every 100 steps: the sampled
    # (first) step of a block takes 3 s, the others 1 s. A warm-up block of 9 s is skipped.
    rare = lane("wandb", 100, [(9.0, 9.0, 10), (3.0, 12.0, 10)], [1.0, 1.0])
    every = lane("floor", 1, [(9.0, 9.0, 10), (1.1, 11.0, 10)], [1.0, 2.0])
    rare_t, every_t = _timings([rare, every], skip=1)
    assert rare_t.amortized and rare_t.ratios == pytest.approx(((3 + 99 * 1) / 100,))
    assert not every_t.amortized and every_t.ratios == pytest.approx((1.1 / 2.0,))
    assert every_t.plain_step_ms == pytest.approx(2000.0)


def test_comm_tap_counts_widget_openings_and_updates() -> None:
    import comm
    import ipywidgets

    original = comm.create_comm
    with CommTap().installed() as tap:
        slider = ipywidgets.IntSlider()
        slider.value = 3
        slider.value = 4
    assert comm.create_comm is original
    mine = [m for m in tap.messages if m.model_name == "IntSliderModel"]
    assert len(mine) == 3  # opening, two updates (its layout and style are widgets of their own)
    assert all(m.nbytes > 0 and m.buffer_bytes == 0 for m in mine)
    slider.close()


def test_comm_tap_measures_array_buffers() -> None:
    import bqplot
    import numpy as np

    y = np.arange(100, dtype=np.float32)
    with CommTap().installed() as tap:
        line = bqplot.Lines(x=y, y=y, scales={"x": bqplot.LinearScale(), "y": bqplot.LinearScale()})
        line.y = y[:50]
    sent = [m for m in tap.messages if m.model_name == "LinesModel"]
    assert [m.buffer_bytes for m in sent] == [2 * y.nbytes, y[:50].nbytes]


def test_sync_counter_runs_and_finds_no_device_syncs_on_cpu() -> None:
    from benchmarks.cuda import count_syncs
    from benchmarks.workloads import Workload
    from gradwidget.models import deep_mlp

    tiny = Workload("tiny", "tiny", lambda: deep_mlp(3, 8, "tanh"), (4, 64), block=2)
    rows = count_syncs(
        tiny, [Contender("item_loop", 1), Contender("wandb", 1)], 2, torch.device("cpu")
    )
    assert [r["config"] for r in rows] == ["plain", "item_loop@1", "wandb@1"]
    assert all(r["syncs_per_step"] == 0 and r["dtoh_per_step"] == 0 for r in rows)


def test_refreshes_are_counted_as_bursts_of_messages() -> None:
    from benchmarks.ui import Message, _bursts

    times = [0.0, 0.004, 0.009, 0.1, 0.102, 0.3]  # three refreshes of a 10 Hz panel
    assert _bursts([Message(t, "LinesModel", 1, 0) for t in times], gap_s=0.05) == 3
