"""Activation statistics read in slices: the same numbers as torch over the whole output."""

from __future__ import annotations

import pytest
import torch

from gradwidget.record import activations
from gradwidget.record.activations import ActivationProbe, activation_stats


def _oracle(x: torch.Tensor, saturation: str | None, unit: int | None) -> list[float]:
    """Mean, population std, dead and saturated fraction of one output, from torch directly."""
    x = x.double()
    if unit is None:
        dead = (x == 0).double().mean()
    else:
        others = [d for d in range(x.ndim) if d != unit]
        dead = ((x.amax(others) == 0) & (x.amin(others) == 0)).double().mean()
    centre = {"sigmoid": 0.5, "tanh": 0.0, None: 0.0}[saturation]
    saturated = ((x - centre).abs() > 0.97 - centre).double().mean()
    return [x.mean(), x.std(unbiased=False), dead, saturated if saturation else float("nan")]


CASES = {  # shape, saturation, unit dim, dtype
    "dense sigmoid": ((64, 40), "sigmoid", 1, torch.float32),
    "conv relu": ((16, 8, 6, 6), None, 1, torch.float32),
    "sequence tanh": ((4, 12, 24), "tanh", 2, torch.float32),
    "bfloat16 dense": ((32, 48), "tanh", 1, torch.bfloat16),
    "vector": ((50,), None, None, torch.float32),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("chunk_bytes", [64, 8 * 2**20])
def test_sliced_statistics_equal_torch_over_the_whole_output(
    name: str, chunk_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(activations, "CHUNK_BYTES", chunk_bytes)
    shape, saturation, unit, dtype = CASES[name]
    gen = torch.Generator().manual_seed(0)
    outputs = [torch.randn(shape, generator=gen).mul(2) for _ in range(3)]
    if saturation == "sigmoid":
        outputs = [x.sigmoid() for x in outputs]
    elif saturation == "tanh":
        outputs = [x.tanh() for x in outputs]
    else:
        outputs = [x.relu() for x in outputs]
    outputs[1][..., :3] = 0  # some units dead whatever the slicing
    outputs = [x.to(dtype) for x in outputs]
    got = activation_stats(torch.stack(outputs), saturation, None if len(shape) == 1 else unit)
    for row, x in zip(got, outputs, strict=True):
        want = torch.tensor(_oracle(x, saturation, None if len(shape) == 1 else unit))
        torch.testing.assert_close(
            row.double(), want.double(), rtol=1e-5, atol=1e-6, equal_nan=True
        )


def test_the_probe_gives_the_same_numbers_in_small_stacks(monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(*[m for _ in range(4) for m in (torch.nn.Linear(16, 16),
                                                              torch.nn.Tanh())])  # fmt: skip
    layers = [(str(i), model[i]) for i in range(0, 8, 2)]
    x = torch.randn(32, 16)

    def sample() -> dict[str, torch.Tensor]:
        probe = ActivationProbe(model, layers)
        probe.arm()
        model(x)
        probe.disarm()
        return probe.take()

    whole = sample()
    monkeypatch.setattr(activations, "STACK_BYTES", 512)  # one output per stack
    monkeypatch.setattr(activations, "CHUNK_BYTES", 512)  # 2 rows a slice
    sliced = sample()
    assert whole.keys() == sliced.keys() == {"0", "2", "4", "6"}
    for name in whole:
        torch.testing.assert_close(sliced[name], whole[name], rtol=1e-5, atol=1e-6, equal_nan=True)


def test_a_unit_is_dead_only_if_every_slice_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(activations, "CHUNK_BYTES", 4 * 6)  # one row of the batch a slice
    x = torch.tensor([[-0.5] * 6, [-0.5] * 6, [0.5] * 6, [0.5] * 6])  # extremes cancel if summed
    x[:, 0] = 0.0  # the one dead unit
    (row,) = activation_stats(x.unsqueeze(0), "tanh", 1)
    assert row[2].item() == pytest.approx(1 / 6)
