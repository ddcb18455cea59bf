"""Run and train() against torch itself: data order, the loop, states, threads, messages."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradwidget as gw
from gradwidget.datasets import Dataset
from gradwidget.models import deep_mlp, small_cnn
from gradwidget.train.settings import OPTIMIZERS

torch.set_num_threads(1)

N, FEATURES, CLASSES = 40, 6, 3
HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
)


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(N, FEATURES, generator=g), torch.randint(0, CLASSES, (N,), generator=g)


def _model(seed: int = 0, activation: str = "tanh") -> nn.Sequential:
    torch.manual_seed(seed)
    return deep_mlp(3, 8, activation, in_features=FEATURES, out_features=CLASSES)


def _exact_recorder(model: nn.Module) -> gw.Recorder:
    # budget=None: every step captured, so two histories have the same step axis.
    return gw.Recorder(model, budget=None)


def _run(model: nn.Module, data: Any, **config: Any) -> gw.Run:
    run = gw.Run(model, data, gw.TrainConfig(**config), recorder=_exact_recorder(model))
    run.start().join(timeout=30)
    run.recorder.close()
    return run


def _oracle_batches(x: torch.Tensor, y: torch.Tensor, batch: int, seed: int, steps: int) -> list:
    """The documented data order: full batches of a fresh randperm per epoch, own generator."""
    g = torch.Generator().manual_seed(seed)
    batches: list = []
    while len(batches) < steps:
        order = torch.randperm(len(x), generator=g)
        batches += [order[i : i + batch] for i in range(0, len(x) - batch + 1, batch)]
    return [(x[i], y[i]) for i in batches[:steps]]


def _recording_loss(seen: list[torch.Tensor]) -> Callable[..., torch.Tensor]:
    def loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        seen.append(y.clone())
        return F.cross_entropy(output, y)

    return loss


# -- reproducibility --------------------------------------------------------------------------


def test_same_seed_gives_bitwise_identical_loss_and_weights() -> None:
    a = _run(_model(), _data(), steps=25, batch_size=8, seed=3)
    b = _run(_model(), _data(), steps=25, batch_size=8, seed=3)
    assert a.state is b.state is gw.RunState.FINISHED
    assert len(a.history.loss) == 25
    assert np.array_equal(a.history.loss, b.history.loss)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_different_seed_gives_a_different_loss_curve() -> None:
    a = _run(_model(), _data(), steps=25, batch_size=8, seed=0)
    b = _run(_model(), _data(), steps=25, batch_size=8, seed=1)
    assert not np.array_equal(a.history.loss, b.history.loss)


def test_default_recorder_agrees_at_the_steps_both_runs_sampled() -> None:
    a, b = (gw.train(_model(), _data(), steps=40, batch_size=8) for _ in range(2))
    sa, sb = a.history.series("loss"), b.history.series("loss")
    common, ia, ib = np.intersect1d(sa.steps, sb.steps, return_indices=True)
    assert len(common) >= 5
    assert np.array_equal(sa.last[ia], sb.last[ib])


def test_data_order_is_a_seeded_randperm_per_epoch_and_leaves_the_global_rng_alone() -> None:
    x, y = _data()
    seen: list[torch.Tensor] = []
    rng_before = torch.random.get_rng_state()
    run = gw.train(_model(), (x, y), steps=12, batch_size=16, seed=5, loss_fn=_recording_loss(seen))
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    oracle = _oracle_batches(x, y, 16, seed=5, steps=12)  # 2 full batches per epoch: 6 epochs
    assert run.step == len(seen) == 12
    assert all(torch.equal(got, want) for got, (_, want) in zip(seen, oracle, strict=True))


def test_epochs_count_full_batches_of_tensor_data() -> None:
    x, y = _data()
    seen: list[torch.Tensor] = []
    run = gw.train(_model(), (x, y), epochs=3, batch_size=16, loss_fn=_recording_loss(seen))
    assert run.total_steps == run.step == 6  # 40 rows: two full batches of 16 per epoch
    oracle = _oracle_batches(x, y, 16, seed=0, steps=6)
    assert all(torch.equal(got, want) for got, (_, want) in zip(seen, oracle, strict=True))


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw", "rmsprop"])
def test_loop_matches_a_plain_torch_loop(optimizer: str) -> None:
    x, y = _data()
    model = _model()
    reference = copy.deepcopy(model)
    run = gw.train(model, (x, y), steps=7, batch_size=8, optimizer=optimizer, lr=0.05)
    opt = OPTIMIZERS[optimizer](reference.parameters(), lr=0.05)
    for xb, yb in _oracle_batches(x, y, 8, seed=0, steps=7):
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(reference(xb), yb)
        loss.backward()
        opt.step()
    assert run.loss == loss.item()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(p, q)


def test_float_targets_default_to_mse_and_optimizer_callable_is_used() -> None:
    x, _ = _data()
    y = x[:, :2].sum(dim=1, keepdim=True).double().numpy()  # float64 arrays are cast
    torch.manual_seed(0)
    model = deep_mlp(2, 8, "tanh", in_features=FEATURES, out_features=1)
    first = copy.deepcopy(model)
    made: list[torch.optim.Optimizer] = []

    def factory(params: Any) -> torch.optim.Optimizer:
        made.append(torch.optim.SGD(params, lr=0.01))
        return made[-1]

    run = _run(model, (x.numpy(), y), steps=3, batch_size=10, optimizer=factory)
    xb, yb = _oracle_batches(x, torch.from_numpy(y).float(), 10, seed=0, steps=1)[0]
    assert len(made) == 1
    assert run.history.loss[0] == np.float32(F.mse_loss(first(xb), yb).item())


def test_a_dataloader_is_read_in_its_own_order_for_the_given_epochs() -> None:
    x, y = _data()
    loaders = [
        torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(x, y),
            batch_size=8,
            shuffle=True,
            generator=torch.Generator().manual_seed(0),
        )
        for _ in range(2)
    ]
    a, b = (_run(_model(), loader, epochs=2) for loader in loaders)
    assert a.total_steps == a.step == 2 * len(loaders[0])
    assert np.array_equal(a.history.loss, b.history.loss)


def test_a_one_shot_iterator_ends_the_run_when_it_runs_out() -> None:
    x, y = _data()
    batches = iter([(x[:8], y[:8]), (x[8:16], y[8:16])])
    run = gw.train(_model(), batches, steps=10)
    assert run.state is gw.RunState.FINISHED
    assert run.step == 2
    assert "ran out after 2 of 10" in run.message


# -- read-outs --------------------------------------------------------------------------------


def test_accuracy_series_and_final_test_accuracy_match_torch() -> None:
    x, y = _data()
    tx, ty = _data(seed=1)
    data = Dataset("toy", x, y, tx, ty, CLASSES)
    run = _run(_model(), data, steps=23, batch_size=8, act_every=5, eval_every=10)
    history = run.history
    assert list(history.series("accuracy").steps) == [0, 5, 10, 15, 20]
    assert list(history.series("test_accuracy").steps) == [9, 19, 22]
    assert run.model.training
    run.model.eval()
    with torch.no_grad():
        want = (run.model(tx).argmax(dim=1) == ty).float().mean().item()
    assert run.test_accuracy == pytest.approx(want, abs=1e-9)
    assert history.test_accuracy[-1] == np.float32(want)
    assert 0 <= run.accuracy <= 1
    assert run.wall_time > 0 and run.steps_per_s > 0


# -- lifecycle and threads --------------------------------------------------------------------


def _long_run() -> gw.Run:
    run = gw.Run(_model(), _data(), gw.TrainConfig(steps=10**7, batch_size=8)).start()
    deadline = time.monotonic() + 10
    while run.step < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.state is gw.RunState.RUNNING
    return run


def test_stop_returns_within_a_second_and_removes_the_hooks() -> None:
    run = _long_run()
    began = time.monotonic()
    state = run.stop()
    assert time.monotonic() - began < 1.0
    assert state is run.state is gw.RunState.STOPPED
    assert "Stopped after" in run.message
    assert run.recorder.closed
    steps = run.step
    assert len(run.history.series("grad_norm")) > 0  # the history outlives the hooks
    time.sleep(0.05)
    assert run.step == steps


def test_pause_holds_the_run_and_resume_continues() -> None:
    run = _long_run()
    run.pause()
    time.sleep(0.1)  # let the current step end
    assert run.state is gw.RunState.PAUSED and "Paused" in run.message
    held, wall = run.step, run.wall_time
    time.sleep(0.3)
    assert run.step == held
    assert run.wall_time - wall < 0.1  # paused time is not training time
    run.resume()
    deadline = time.monotonic() + 10
    while run.step <= held and time.monotonic() < deadline:
        time.sleep(0.01)
    assert run.step > held
    assert run.stop() is gw.RunState.STOPPED


def test_stop_while_paused_ends_the_run() -> None:
    run = _long_run()
    run.pause()
    assert run.stop() is gw.RunState.STOPPED


def test_start_trains_on_another_thread_and_train_on_the_caller() -> None:
    threads: list[threading.Thread] = []

    def loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        threads.append(threading.current_thread())
        return F.cross_entropy(output, y)

    gw.train(_model(), _data(), steps=2, loss_fn=loss)
    gw.Run(_model(), _data(), gw.TrainConfig(steps=2, loss_fn=loss)).start().join(10)
    assert threads[0] is threads[1] is threading.current_thread()
    assert threads[2] is threads[3] is not threading.current_thread()


def test_starting_twice_is_a_clear_error() -> None:
    run = gw.Run(_model(), _data(), gw.TrainConfig(steps=2)).start()
    with pytest.raises(RuntimeError, match="create a new Run"):
        run.start()
    run.join(10)


def test_stop_from_inside_the_loop_does_not_wait_for_itself() -> None:
    def loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        began = time.monotonic()
        run.stop(timeout=30)
        waited.append(time.monotonic() - began)
        return F.cross_entropy(output, y)

    waited: list[float] = []
    run = gw.Run(_model(), _data(), gw.TrainConfig(steps=50, loss_fn=loss))
    assert run.start().join(30) is gw.RunState.STOPPED
    assert run.step == 1 and waited[0] < 1.0


def test_stop_before_start_ends_the_run_without_training() -> None:
    run = gw.Run(_model(), _data())
    assert run.join() is gw.RunState.IDLE  # nothing to wait for
    assert run.stop() is gw.RunState.STOPPED and run.step == 0
    with pytest.raises(RuntimeError, match="stopped"):
        run.start()


def test_keyboard_interrupt_stops_the_run() -> None:
    def loss(output: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return F.cross_entropy(output, y)

    calls: list[int] = []
    run = gw.train(_model(), _data(), steps=50, loss_fn=loss)
    assert run.state is gw.RunState.STOPPED
    assert run.step == 3 and "Interrupted" in run.message


def _hooks(model: nn.Module) -> list[int]:
    return [len(getattr(m, d)) for m in model.modules() for d in HOOK_DICTS]


@pytest.mark.parametrize("lr", [0.1, 1e6], ids=["finished", "diverged"])
def test_the_run_leaves_no_hook_behind(lr: float) -> None:
    model = _model(activation="relu")
    before = _hooks(model)
    run = gw.train(model, _data(), steps=30, lr=lr, batch_size=8, act_every=1)
    assert run.state.ended
    assert _hooks(model) == before


def test_a_given_recorder_is_left_open() -> None:
    model = _model()
    recorder = gw.Recorder(model)
    run = gw.Run(model, _data(), gw.TrainConfig(steps=3), recorder=recorder).start()
    run.join(10)
    assert run.recorder is recorder and not recorder.closed
    assert recorder.step == 3
    recorder.close()


# -- failures ---------------------------------------------------------------------------------


def test_a_huge_learning_rate_diverges_with_advice_and_keeps_the_history() -> None:
    model = _model(activation="relu")
    run = _run(model, _data(), steps=200, lr=1e6, batch_size=8)
    assert run.state is gw.RunState.DIVERGED
    assert 0 < run.step < 200
    assert f"at step {run.step}" in run.message
    assert "learning rate" in run.message and "clip" in run.message
    loss = run.history.loss
    assert len(loss) == run.step and not np.isfinite(loss[-1]) and np.isfinite(loss[0])
    diverged = gw.train(_model(activation="relu"), _data(), lr=1e6, batch_size=8)
    assert diverged.state is gw.RunState.DIVERGED


class _Boom(nn.Module):
    def __init__(self, at_call: int) -> None:
        super().__init__()
        self.fc = nn.Linear(FEATURES, CLASSES)
        self.calls, self.at_call = 0, at_call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.at_call:
            raise RuntimeError("boom inside forward")
        return self.fc(x)


class _FailingSGD(torch.optim.SGD):
    def step(self, closure: Any = None) -> Any:
        self.count = getattr(self, "count", 0) + 1
        if self.count == 3:
            raise ValueError("optimizer exploded")
        return super().step(closure)


def test_an_exception_in_the_model_fails_the_run_with_the_cause_kept() -> None:
    run = gw.Run(_Boom(at_call=4), _data(), gw.TrainConfig(steps=10, batch_size=8)).start()
    assert run.join(10) is gw.RunState.FAILED
    assert isinstance(run.error, gw.TrainingError)
    assert isinstance(run.error.__cause__, RuntimeError)
    assert "boom inside forward" in run.message and run.step == 3


def test_an_unexpected_exception_names_the_step_and_the_error() -> None:
    config = gw.TrainConfig(steps=10, optimizer=lambda ps: _FailingSGD(ps, lr=0.1))
    run = gw.Run(_model(), _data(), config).start()
    assert run.join(10) is gw.RunState.FAILED
    assert "at step 3" in run.message and "ValueError: optimizer exploded" in run.message
    assert isinstance(run.error.__cause__, ValueError)


class _CorruptRecord(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i == 20:
            raise OSError("cannot read record 20")
        return X[i], Y[i]


X, Y = _data()
NAN_X = X.clone()
NAN_X[5, 2] = float("nan")
BAD_INPUTS = {
    "empty tensors": ((X[:0], Y[:0]), {}, gw.DataError, ["empty"]),
    "empty iterable": ([], {}, gw.DataError, ["no batches"]),
    "not data": (42, {}, gw.DataError, ["int", "(X, y)"]),
    "length mismatch": ((X, Y[:-1]), {}, gw.DataError, ["40 rows", "39 rows"]),
    "narrow inputs": ((X[:, :4], Y), {}, gw.DataError, ["(8, 4)", "in_features=6", "Linear"]),
    "float labels": ((X, Y.float()), {}, gw.DataError, ["y.long()", "MSE"]),
    "float labels, CE": (
        (X, Y.float()),
        {"loss_fn": nn.CrossEntropyLoss()},
        gw.DataError,
        ["y.long()"],
    ),
    "NaN inputs": ((NAN_X, Y), {}, gw.DataError, ["NaN", "row 5"]),
    "NaN first batch": ([(NAN_X[:8], Y[:8])], {}, gw.DataError, ["NaN", "row 5"]),
    "not a pair": ([X[:8]], {}, gw.DataError, ["pair (inputs, targets)"]),
    "loader raises": (
        torch.utils.data.DataLoader(_CorruptRecord(), batch_size=8),
        {},
        gw.DataError,
        ["batch 3", "OSError: cannot read record 20", "Dataset's __getitem__"],
    ),
    "per-sample loss": (
        (X, Y),
        {"loss_fn": nn.CrossEntropyLoss(reduction="none")},
        gw.TrainingError,
        ["shape (8,)", "reduction='mean'"],
    ),
    "loss raises": (
        (X, Y),
        {"loss_fn": lambda out, y: F.nll_loss(out, y, weight=torch.ones(7))},
        gw.TrainingError,
        ["loss function raised", "(8, 3)"],
    ),
    "detached loss": (
        (X, Y),
        {"loss_fn": lambda out, y: F.cross_entropy(out.detach(), y)},
        gw.TrainingError,
        ["requires_grad"],
    ),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_fails_with_a_sentence_naming_problem_and_fix(case: str) -> None:
    data, config, error, words = BAD_INPUTS[case]
    run = gw.Run(_model(), data, gw.TrainConfig(steps=5, batch_size=8, **config)).start()
    assert run.join(10) is gw.RunState.FAILED
    assert isinstance(run.error, error)
    for word in words:
        assert word in run.message
    with pytest.raises(error) as raised:
        gw.train(_model(), data, steps=5, batch_size=8, **config)
    assert str(raised.value) == run.message


def test_images_with_the_wrong_channels_name_the_conv_layer() -> None:
    images = torch.randn(16, 3, 8, 8)
    with pytest.raises(gw.DataError, match=r"in_channels=1.*\n?") as raised:
        gw.train(small_cnn(in_channels=1), (images, torch.zeros(16, dtype=torch.long)), steps=1)
    assert "(16, 3, 8, 8)" in str(raised.value) and "Conv2d" in str(raised.value)


def test_a_model_without_parameters_cannot_train() -> None:
    run = gw.Run(nn.Flatten(), _data(), gw.TrainConfig(steps=2)).start()
    assert run.state is gw.RunState.FAILED
    assert "no trainable parameters" in run.message
    with pytest.raises(gw.TrainingError, match="no trainable parameters"):
        gw.train(nn.Flatten(), _data())


@pytest.mark.parametrize(
    "fields",
    [{"steps": 0}, {"batch_size": 0}, {"lr": 0.0}, {"epochs": 0}, {"optimizer": "lbfgs"}],
)
def test_config_rejects_impossible_settings(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        gw.TrainConfig(**fields)


def test_train_loss_holds_every_step_even_when_gradients_are_sampled() -> None:
    data = gw.datasets.spirals(n=120, classes=3, seed=0)
    model = gw.models.deep_mlp(depth=2, width=8, in_features=2, out_features=3)
    recorder = gw.Recorder(model, budget=1e-9)  # a budget no capture can meet: sparse gradients
    config = gw.TrainConfig(steps=50, batch_size=16)
    run = gw.Run(model, data, config, recorder=recorder).start()
    assert run.join(timeout=30) is gw.RunState.FINISHED
    recorder.close()
    history = run.history
    assert len(history.steps) < 50
    assert history.series("train_loss").steps.tolist() == list(range(50))
    assert history.train_loss[-1] == pytest.approx(run.loss)
    np.testing.assert_array_equal(history.loss_curve().last, history.series("train_loss").last)
