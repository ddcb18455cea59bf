"""Hardening, models: every shape of model in the zoo trains, records, is diagnosed and remedied.

Torch is the oracle: per-layer gradient norms are recomputed from the ``p.grad`` the last
step left behind, and every remedy either builds a working copy or says why it cannot.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import _zoo
import numpy as np
import pytest
import torch
from torch import nn

import gradwidget as gw

torch.set_num_threads(1)

STEPS = 4  # below the recorder's warm-up: every step is captured, the last row is the last step
CASES = [(name, device) for device in _zoo.devices() for name in _zoo.ZOO]
IDS = [f"{name}-{device}" for name, device in CASES]
# (model, remedy) pairs that must refuse, and a word the reason must contain.
_NO_BLOCK = (
    "conv1d", "conv2d", "conv3d", "frozen", "functional", "gru", "lstm", "one_layer",
    "relu_inplace", "tied", "transformer", "untraceable", "unused_branch",
)  # fmt: skip
NOT_APPLICABLE = {
    ("untraceable", "relu"): "torch.fx",
    ("relu_inplace", "relu"): "nothing to replace",
    ("lstm", "relu"): "nothing to replace",
    ("gru", "relu"): "nothing to replace",
    ("transformer", "relu"): "nothing to replace",
    ("one_layer", "relu"): "nothing to replace",
    ("lstm", "batchnorm"): "no hidden Linear or Conv",
    ("gru", "batchnorm"): "no hidden Linear or Conv",
    ("one_layer", "batchnorm"): "no hidden Linear or Conv",
    **{(name, "leaky_relu"): "nothing to replace" for name in ("lstm", "gru", "transformer")},
    **{(name, "gelu"): "nothing to replace" for name in ("lstm", "gru", "transformer")},
    ("one_layer", "leaky_relu"): "nothing to replace",
    ("one_layer", "gelu"): "nothing to replace",
    ("untraceable", "leaky_relu"): "torch.fx",
    ("untraceable", "gelu"): "torch.fx",
    **{(name, "layernorm"): "no hidden Linear or Conv" for name in ("lstm", "gru", "one_layer")},
    # Every hidden layer of these changes the width (or is called from forward, not a block).
    **{
        (name, "residual"): "no hidden block whose output has its input's shape"
        for name in _NO_BLOCK
    },
}
WRAPPERS: dict[str, Callable[[nn.Module], nn.Module]] = {
    "data_parallel": nn.DataParallel,
    "compiled": lambda model: torch.compile(model, backend="eager"),
}


def torch_layer_norms(model: nn.Module) -> dict[str, float]:
    """The contract's layers (modules owning parameters; a tied one counts at its first owner)
    and the L2 norm of their parameters' gradients, NaN where none has a gradient."""
    seen: set[int] = set()
    norms = {}
    for name, module in model.named_modules():
        own = [p for p in module.parameters(recurse=False) if id(p) not in seen]
        seen.update(id(p) for p in own)
        grads = [p.grad.double().flatten() for p in own if p.grad is not None]
        if own:
            value = torch.linalg.vector_norm(torch.cat(grads)).item() if grads else math.nan
            norms[name or type(module).__name__] = value
    return norms


def state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def assert_recorded_like_torch(run: gw.Run, model: nn.Module, rtol: float) -> None:
    history = run.history
    expected = torch_layer_norms(model)
    assert set(history.layers) == set(expected)
    last = history.series("grad_norm").last[-1]  # (L,) whatever L is
    for layer, value in zip(history.layers, last, strict=True):
        if math.isnan(expected[layer]):
            assert math.isnan(value), layer
        else:
            assert value == pytest.approx(expected[layer], rel=rtol), layer
    assert np.isfinite(history.loss).all() and len(history) == STEPS
    findings = gw.diagnose(history)
    assert all(isinstance(f, gw.Finding) for f in findings)


@pytest.mark.parametrize(("name", "device"), CASES)
def test_zoo_model_trains_and_records_the_norms_torch_computes(name: str, device: str) -> None:
    model = _zoo.build(name, device)
    run = gw.train(model, _zoo.data(name), steps=STEPS, batch_size=8)
    assert run.state is gw.RunState.FINISHED and run.step == STEPS
    rtol = 2e-2 if _zoo.ZOO[name].dtype == torch.bfloat16 else 1e-5
    assert_recorded_like_torch(run, model, rtol)
    assert run.recorder.closed


def test_one_layer_history_keeps_the_documented_layer_axis() -> None:
    run = gw.train(_zoo.build("one_layer"), _zoo.data("one_layer"), steps=STEPS, batch_size=8)
    assert run.history.grad_norm.shape == (STEPS, 1)  # (T, L) with L = 1, as documented


@pytest.mark.parametrize("remedy", gw.remedies.REMEDY_NAMES)
@pytest.mark.parametrize(("name", "device"), CASES, ids=IDS)
def test_zoo_remedy_builds_a_working_copy_or_says_why_not(
    name: str, device: str, remedy: str
) -> None:
    model = _zoo.build(name, device)
    before = state(model)
    x, y = _zoo.data(name, rows=8)
    reason = NOT_APPLICABLE.get((name, remedy))
    if reason is not None:
        with pytest.raises(gw.RemedyNotApplicable, match=reason):
            gw.remedies.check(model, remedy)
        with pytest.raises(gw.RemedyNotApplicable, match=reason):
            gw.apply_remedies(model, [remedy])
        assert_same_state(model, before)
        return
    change = gw.remedies.check(model, remedy)
    assert change.name == remedy and change.summary and change.code
    fixed = gw.apply_remedies(model, [remedy])
    assert fixed is not model
    inputs = x.to(device, _zoo.ZOO[name].dtype)
    with torch.no_grad():
        assert fixed(inputs).shape == model(inputs).shape
    run = gw.train(fixed, (x, y), steps=2, batch_size=4)
    assert run.state is gw.RunState.FINISHED
    assert_same_state(model, before)


@pytest.mark.parametrize("wrapper", WRAPPERS, ids=list(WRAPPERS))
def test_wrapped_model_trains_records_and_remedies(wrapper: str) -> None:
    inner = _zoo.build("sequential")
    model = WRAPPERS[wrapper](inner)
    run = gw.train(model, _zoo.data("sequential"), steps=STEPS, batch_size=8)
    assert run.state is gw.RunState.FINISHED
    assert_recorded_like_torch(run, model, rtol=1e-5)
    before = state(inner)
    x, _ = _zoo.data("sequential", rows=8)
    for remedy in gw.remedies.REMEDY_NAMES:
        fixed = gw.apply_remedies(model, [remedy])
        with torch.no_grad():
            assert fixed(x).shape == (8, _zoo.CLASSES)
    assert_same_state(inner, before)


def test_a_layer_whose_weights_are_all_zero_records_without_warnings() -> None:
    model = gw.apply_remedies(_zoo.build("tied"), ["he_init"])  # "second" keeps a zeroed bias
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run = gw.train(model, _zoo.data("tied"), steps=STEPS, batch_size=8, act_every=1)
    column = run.history.layers.index("second")
    ratio, weight = run.history.update_ratio[:, column], run.history.weight_norm[:, column]
    assert (weight == 0).any()  # the case under test happened
    assert np.isnan(ratio[weight == 0]).all()  # no ratio to a zero norm, and no Inf
    assert np.isfinite(ratio[weight > 0]).all()


@pytest.mark.parametrize("device", _zoo.devices())
def test_a_model_without_parameters_is_refused_clearly_everywhere(device: str) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Sigmoid()).to(device)
    with pytest.raises(gw.GradWidgetError, match="no parameters"):
        gw.Recorder(model)
    with pytest.raises(gw.TrainingError, match="no trainable parameters"):
        gw.train(model, _zoo.data("sequential"), steps=2)
    with pytest.raises(gw.RemedyNotApplicable, match="no Linear or Conv"):
        gw.remedies.check(model, "he_init")
