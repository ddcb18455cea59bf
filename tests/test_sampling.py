"""No event lost under sampling; one host transfer path; no host sync on a plain step.

The long test drives the Recorder's real scheduling code with synthetic steps (gradients set
directly, no forward pass), which is also the hardest case for sampling: a step costs almost
nothing, so the time budget spaces gradient captures as far apart as it ever does.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from _loops import train_steps
from torch import nn

import gradwidget as gw
from gradwidget.record._tick_ring import _norm_float

STEPS = 100_000
BURSTS = (20_011, 50_003, 80_017)  # 20 steps each, gradients and loss x1000
BURST_LEN, FACTOR = 20, 1000.0


def _tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))


def _set_grads(model: nn.Module, grads: list[torch.Tensor]) -> None:
    for p, g in zip(model.parameters(), grads, strict=True):
        p.grad = g


def _covering(steps: np.ndarray, first: int, last: int) -> np.ndarray:
    """Buckets (each covers the steps after the previous bucket's step) that meet [first, last]."""
    starts = np.concatenate([[-1], steps[:-1]]) + 1
    return (steps >= first) & (starts <= last)


def test_three_bursts_survive_100k_sampled_steps_at_defaults() -> None:
    model = _tiny()
    normal = [torch.randn_like(p) for p in model.parameters()]
    burst = [g * FACTOR for g in normal]
    gen = torch.Generator().manual_seed(1)
    losses = 1.0 + 0.2 * torch.rand(4096, generator=gen)  # a noisy, healthy loss
    in_burst = np.zeros(STEPS, bool)
    for b in BURSTS:
        in_burst[b : b + BURST_LEN] = True
    _set_grads(model, normal)
    with gw.Recorder(model) as rec:  # defaults: 3 % budget, act_every=10
        for step in range(STEPS):
            if in_burst[step] != in_burst[step - 1]:
                _set_grads(model, burst if in_burst[step] else normal)
            loss = losses[step % 4096] * (FACTOR if in_burst[step] else 1.0)
            rec.capture(loss)
        grad_every, h = rec.grad_every, rec.history
    assert grad_every > 8  # sampling was on: most steps were not captured
    base = np.array([torch.linalg.vector_norm(g).item() for g in normal])
    grad, loss = h.series("grad_norm"), h.series("train_loss")
    for b in BURSTS:
        at = _covering(grad.steps, b, b + BURST_LEN - 1)
        assert np.nanmax(grad.hi[at]) > 100 * base.max(), f"burst at {b} lost in grad_norm"
        at = _covering(loss.steps, b, b + BURST_LEN - 1)
        assert loss.hi[at].max() > 100 * 1.2, f"burst at {b} lost in train_loss"
    for name in h.metrics:  # bounded, whatever the run length
        assert len(h.series(name)) <= h.capacity
    assert h.nbytes() < 2**20


def test_a_single_nan_step_is_captured_on_that_step() -> None:
    model = _tiny()
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    with gw.Recorder(model, act_every=None, budget=None) as rec:
        rec.grad_every = 1000  # as if the budget had thinned captures
        for step in range(40):
            model.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            if step == 33:
                model[4].bias.grad[0] = math.nan  # the layer nearest the loss
            rec.capture()  # no loss given: the sentinel gradient norm alone
        h = rec.history
    assert h.steps.tolist() == [0, 33]
    assert h.nonfinite[-1].tolist() == [0, 0, 1]


def test_quiet_steps_skip_the_clock_and_a_jump_on_one_is_captured_there() -> None:
    model = _tiny()
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))
    with gw.Recorder(model, act_every=None) as rec:  # the default time budget
        clock, reads = rec._clock, []
        rec._clock = lambda: reads.append(1) or clock()  # a timed step reads it twice
        for step in range(400):
            model.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            if step == 333:
                model[4].bias.grad[0] = math.nan
            rec.capture(loss)
        h = rec.history
    assert rec.grad_every > 8  # captures were thinned: most steps had nothing due
    # Timed: the steps until the first decision, two around each later one, the captures.
    assert len(reads) / 2 < 0.25 * 400
    assert 333 in h.steps.tolist() and h.nonfinite[h.steps.tolist().index(333)][-1] == 1
    assert h.series("train_loss").steps.tolist() == list(range(400))  # every tick recorded


def test_every_step_loss_is_recorded_in_an_own_loop() -> None:
    model = _tiny()
    with gw.Recorder(model) as rec:
        for step in range(50):
            model.zero_grad()
            model(torch.randn(8, 4)).sum().backward()
            rec.capture(float(step))
        h = rec.history
    assert h.series("train_loss").steps.tolist() == list(range(50))
    assert h.train_loss.tolist() == [float(s) for s in range(50)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("shape", [(), (1,), (10,), (64,), (65,), (3, 16), (4096,)])
def test_the_cpu_sentinel_norm_is_torch_s(dtype: torch.dtype, shape: tuple[int, ...]) -> None:
    # 300^2 overflows float16: the norm must be taken wider, as torch does with dtype=float32
    seeded = torch.Generator().manual_seed(len(shape))
    grad = (torch.randn(shape, generator=seeded) * 300).to(dtype)
    expected = torch.linalg.vector_norm(grad.double()).item()
    assert _norm_float(grad) == pytest.approx(expected, rel=1e-5)
    for bad in (math.nan, math.inf):
        grad.view(-1)[grad.numel() // 2] = bad
        assert not math.isfinite(_norm_float(grad))


class _HostReads:
    """Counts the Tensor methods that read a device tensor on the host."""

    NAMES = ("item", "tolist", "cpu")

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = dict.fromkeys(self.NAMES, 0)
        for name in self.NAMES:
            original = getattr(torch.Tensor, name)

            def counted(self_: torch.Tensor, *a: object, _n: str = name, _f=original, **k: object):
                self.calls[_n] += 1
                return _f(self_, *a, **k)

            monkeypatch.setattr(torch.Tensor, name, counted)


def test_plain_steps_make_no_transfer_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    rec = gw.Recorder(model, act_every=None, budget=None)
    train_steps(model, rec, 3, opt)  # three captured steps
    rec.grad_every = 10**6  # from now on every step is plain
    reads = _HostReads(monkeypatch)
    before = rec.transfers
    train_steps(model, rec, 80, opt)
    # On CPU a tick is read as made: the loss (item) and the values of the small sentinel
    # gradient, whose norm is taken in Python (tolist). No transfer.
    assert rec.transfers - before == 0
    assert reads.calls == {"item": 80, "tolist": 80, "cpu": 0}
    assert len(rec.history.series("train_loss")) == 83
    rec.close()


def test_transfers_per_100_steps_at_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with gw.Recorder(model) as rec:
        train_steps(model, rec, 100, opt)
        reads = _HostReads(monkeypatch)
        before = rec.transfers
        train_steps(model, rec, 100, opt)
        made, calls = rec.transfers - before, dict(reads.calls)
        h = rec.live
        # steps with something due: gradients, an activation sample, the update after one
        due = {*h.steps, *h.series("act_mean").steps, *(h.series("update_ratio").steps + 1)}
        busy = sum(100 <= s < 200 for s in due)
    # one transfer per step with something due; the ticks (read on the host) travel in none
    assert made == busy
    assert calls == {"item": 100, "tolist": 100, "cpu": made}


# The CUDA case joins where a GPU exists: no host read at all but the link's one copy per
# transfer. On the CPU (no sync debug mode there) the same steps read only each step's tick
# (the loss, the sentinel gradient's few values), memory reads there, and copy once per
# transfer.
DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("act_every", [None, 1])
def test_no_host_sync_in_any_step(
    device: str, act_every: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _tiny().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(16, 4, device=device), torch.randint(0, 2, (16,), device=device)
    with gw.Recorder(model, act_every=act_every) as rec:
        train_steps(model, rec, 3, opt, (x, y))  # warm-up: pinned buffers, the layer order
        before, reads = rec.transfers, _HostReads(monkeypatch)
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("error")
        try:
            train_steps(model, rec, 40, opt, (x, y))
        finally:
            if device == "cuda":
                torch.cuda.set_sync_debug_mode(0)
        made, calls = rec.transfers - before, dict(reads.calls)
        h = rec.history  # reading the history may wait; the steps did not
    ticks = 40 if device == "cpu" else 0
    assert calls == {"item": ticks, "tolist": ticks, "cpu": made}
    assert h.series("train_loss").steps.tolist() == list(range(43))
    assert np.isfinite(h.grad_norm).all()
