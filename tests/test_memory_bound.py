"""The history's share of the memory bound: sized from the model, clamped, or as given."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from benchmarks.memory import activation_peak
from gradwidget.models import deep_mlp
from gradwidget.record._measure import ALL
from gradwidget.record._memory import (
    HISTORY_FLOOR,
    MAX_CAPACITY,
    MIN_CAPACITY,
    SHARE,
    UPDATE_SHARE,
    history_capacity,
)
from gradwidget.record.activations import CHUNK_BYTES
from gradwidget.record.recorder import Recorder


def _filled_nbytes(rec: Recorder) -> int:
    """The history's bytes once every series a managed run writes exists."""
    for name in ("train_loss", "loss", "accuracy", "test_accuracy", "amp_scale", "amp_skipped"):
        rec.live.append(name, 0, 0.0)
    for name in ("grad_norm", "nonfinite", "act_mean", "act_std", "dead_frac",
                 "saturated_frac", "weight_norm", "update_ratio"):  # fmt: skip
        rec.live.append(name, 0, torch.zeros(len(rec.layers)).numpy())
    return rec.live.nbytes()


@pytest.mark.parametrize("width", [512, 2048])
def test_the_default_history_holds_its_share_of_a_large_model(width: int) -> None:
    model = deep_mlp(6, width, "relu")  # 1.6M and 25M parameters
    param_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with Recorder(model) as rec:
        held = _filled_nbytes(rec)
    allowance = max((SHARE - UPDATE_SHARE) * param_bytes, HISTORY_FLOOR)
    assert held <= allowance
    assert MIN_CAPACITY <= rec.live.capacity <= MAX_CAPACITY


def test_a_small_model_keeps_the_floor_and_a_large_one_the_most_a_chart_draws() -> None:
    assert history_capacity(10_000, 10, ALL) == history_capacity(1, 10, ALL) > MIN_CAPACITY
    assert history_capacity(10**12, 10, ALL) == MAX_CAPACITY
    assert history_capacity(1, 5000, ALL) == MIN_CAPACITY  # even when the floor cannot hold it


def test_fewer_tiers_leave_room_for_more_buckets() -> None:
    sizes = [history_capacity(40 * 2**20, 40, tiers)
             for tiers in (ALL, {"gradients", "updates"}, {"gradients"})]  # fmt: skip
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]


def test_an_explicit_capacity_is_used_as_given() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 1))
    with Recorder(model, capacity=10) as rec:
        assert rec.live.capacity == 10
        model(torch.randn(2, 4)).sum().backward()
        rec.capture()
    assert rec.history.capacity == 10


def test_an_activation_sample_adds_little_to_the_peak_of_a_model_with_large_activations() -> None:
    """12 sigmoid layers of 512 units on a batch of 2048: 48 MB of activations. Holding and
    stacking them all at once added 1.7x their size to the peak; read in slices, a few chunks."""
    plain = activation_peak("plain", 12, 512, 2048)["peak_rss_mb"]
    recorded = activation_peak("gradients,activations,updates", 12, 512, 2048)["peak_rss_mb"]
    assert recorded - plain <= 4 * CHUNK_BYTES / 2**20
