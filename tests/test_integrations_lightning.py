"""The Lightning callback: the norms torch reads at the same hook, once per optimizer step."""

from __future__ import annotations

import importlib
import sys
from types import SimpleNamespace

import lightning.pytorch as L
import numpy as np
import pytest
import pytorch_lightning
import torch
import torch.nn.functional as F
from _grad_oracle import ForwardOrder, layer_norms, own_layers

import gradwidget as gw
from gradwidget.integrations.lightning import GradWidgetCallback


class _Classifier:
    """The module's body, shared by the `lightning` and `pytorch_lightning` versions."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.losses: list[float] = []  # every micro-batch's loss, as torch computed it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch: tuple, index: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.losses.append(loss.item())
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Classifier(_Classifier, L.LightningModule):
    pass


class Oracle(L.Callback):
    """Registered after gradwidget's: reads every layer's p.grad at the same hook."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []
        self.names: tuple[str, ...] = ()

    def on_fit_start(self, trainer: object, module: torch.nn.Module) -> None:
        self.layers = own_layers(module)
        self.order = ForwardOrder(module)

    def on_before_optimizer_step(self, trainer: object, module: object, optimizer: object) -> None:
        self.order.remove()
        self.names = tuple(self.order.order)
        self.rows.append(layer_norms(self.layers, self.names))


@pytest.fixture(scope="module")
def loader() -> torch.utils.data.DataLoader:
    data = gw.datasets.digits()
    x = torch.as_tensor(data.x_train, dtype=torch.float32)
    pairs = torch.utils.data.TensorDataset(x, torch.as_tensor(data.y_train))
    return torch.utils.data.DataLoader(
        pairs, batch_size=64, shuffle=True, generator=torch.Generator().manual_seed(0)
    )


def fit(module, loader, steps, *callbacks, trainer_module=L, **options):
    trainer = trainer_module.Trainer(
        max_steps=steps, callbacks=list(callbacks), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, **options,
    )  # fmt: skip
    trainer.fit(module, loader)
    return trainer


def watched(depth: int) -> tuple[Classifier, GradWidgetCallback, Oracle]:
    """A sigmoid MLP module, gradwidget's callback, and torch's reading after it."""
    return (
        Classifier(gw.models.deep_mlp(depth=depth)),
        GradWidgetCallback(display=False, budget=None),
        Oracle(),
    )


def assert_matches_torch(history: gw.History, oracle: Oracle) -> None:
    assert history.layers == oracle.names  # forward order, as torch ran the modules
    np.testing.assert_allclose(history.grad_norm, np.stack(oracle.rows), rtol=1e-5)


@pytest.mark.parametrize(
    ("fixes", "vanishing"), [((), True), (("relu", "he_init"), False)], ids=["sigmoid", "fixed"]
)
def test_ten_layer_sigmoid_mlp_is_diagnosed_vanishing_and_the_fixed_one_not(
    loader, fixes, vanishing
) -> None:
    torch.manual_seed(0)
    net = gw.apply_remedies(gw.models.deep_mlp(depth=10, activation="sigmoid"), fixes)
    callback, oracle = GradWidgetCallback(display=False, budget=None), Oracle()
    fit(Classifier(net), loader, 150, callback, oracle)
    history = callback.history
    assert_matches_torch(history, oracle)
    assert ("vanishing" in [f.kind for f in gw.diagnose(history)]) is vanishing


def test_accumulated_steps_count_once_with_the_mean_loss(loader) -> None:
    module, callback, oracle = watched(depth=4)
    fit(module, loader, 5, callback, oracle, accumulate_grad_batches=3)
    history = callback.history
    assert_matches_torch(history, oracle)
    assert len(history.steps) == 5
    expected = np.array(module.losses[:15]).reshape(5, 3).mean(axis=1)
    np.testing.assert_allclose(history.series("train_loss").last.ravel(), expected, rtol=1e-5)


@pytest.mark.parametrize("precision", ["bf16-mixed", "16-mixed"])
def test_mixed_precision_records_unscaled_norms_and_loss(loader, precision) -> None:
    options = {"precision": precision}
    if precision == "16-mixed":  # Lightning has no fp16 scaler on CPU: hand it one
        from lightning.pytorch.plugins import MixedPrecision

        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
        options = {"plugins": [MixedPrecision("16-mixed", "cpu", scaler=scaler)]}
    module, callback, oracle = watched(depth=4)
    fit(module, loader, 6, callback, oracle, accumulate_grad_batches=2, **options)
    history = callback.history
    assert_matches_torch(history, oracle)
    expected = np.array(module.losses[:12]).reshape(6, 2).mean(axis=1)
    np.testing.assert_allclose(history.series("train_loss").last.ravel(), expected, rtol=1e-3)


def test_display_shows_a_panel_whose_fixes_work_and_leaves_no_hook(loader) -> None:
    net = gw.models.deep_mlp(depth=6, activation="sigmoid")
    module, callback = Classifier(net), GradWidgetCallback(budget=None)
    fit(module, loader, 20, callback)
    panel = callback.panel
    assert isinstance(panel, gw.GradPanel)
    assert panel.recorder.history.grad_norm.shape == (20, 6)
    fixed = panel.remedied_model(["relu"])
    assert not any(isinstance(m, torch.nn.Sigmoid) for m in fixed.modules())
    assert any(isinstance(m, torch.nn.Sigmoid) for m in net.modules())
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in module.modules())
    again = GradWidgetCallback(budget=None)  # a second fit of the same model is allowed
    fit(module, loader, 2, again)
    assert again.history.grad_norm.shape == (2, 6)
    panel.close()
    again.panel.close()


def test_a_compiled_module_is_recorded(loader) -> None:
    torch._dynamo.reset()
    module, callback, oracle = watched(depth=3)
    # The eager backend runs dynamo's tracing (what hooks meet) without codegen's minutes.
    fit(torch.compile(module, backend="eager"), loader, 12, callback, oracle)
    assert_matches_torch(callback.history, oracle)


def test_the_standalone_pytorch_lightning_package_works(loader, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "lightning", None)  # only the old name importable
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "gradwidget.integrations.lightning")
    fallback = importlib.import_module("gradwidget.integrations.lightning")
    assert issubclass(fallback.GradWidgetCallback, pytorch_lightning.Callback)

    class Module(_Classifier, pytorch_lightning.LightningModule):
        pass

    callback = fallback.GradWidgetCallback(display=False, budget=None)
    net = gw.models.deep_mlp(depth=3)
    fit(Module(net), loader, 4, callback, trainer_module=pytorch_lightning)
    assert callback.history.grad_norm.shape == (4, 3)


def test_without_lightning_the_import_names_the_extra(monkeypatch) -> None:
    for name in ("lightning", "lightning.pytorch", "pytorch_lightning"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.delitem(sys.modules, "gradwidget.integrations.lightning")
    with pytest.raises(gw.GradWidgetError, match=r"pip install 'gradwidget\[lightning\]'"):
        importlib.import_module("gradwidget.integrations.lightning")


def test_other_ranks_record_without_a_panel() -> None:
    module = Classifier(gw.models.deep_mlp(depth=3))
    trainer = SimpleNamespace(is_global_zero=False, precision_plugin=SimpleNamespace())
    callback = GradWidgetCallback()  # display=True, but this is not global rank 0
    callback.on_fit_start(trainer, module)
    loss = module.training_step((torch.randn(8, 64), torch.randint(0, 10, (8,))), 0)
    callback.on_before_backward(trainer, module, loss)
    loss.backward()
    callback.on_before_optimizer_step(trainer, module, None)
    callback.on_fit_end(trainer, module)
    assert callback.panel is None
    assert callback.history.series("train_loss").last[0, 0] == pytest.approx(loss.item())


def test_fp16_steps_the_scaler_skips_are_recorded_as_skipped_not_diagnosed(loader) -> None:
    from lightning.pytorch.plugins import MixedPrecision

    # 2**24 overflows fp16 at first: the scaler skips steps and halves its scale until it fits.
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24)
    module, callback, oracle = watched(depth=4)
    plugin = MixedPrecision("16-mixed", "cpu", scaler=scaler)
    fit(module, loader, 12, callback, oracle, plugins=[plugin])
    history = callback.history
    assert_matches_torch(history, oracle)  # Inf where the gradients overflowed
    overflowed = ~np.isfinite(np.stack(oracle.rows)).all(axis=1)
    assert 0 < overflowed.sum() < len(overflowed)
    assert len(history.series("amp_skipped").steps) > 0
    assert "non_finite" not in [f.kind for f in gw.diagnose(history)]
