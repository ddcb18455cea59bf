"""The Hugging Face Trainer callback: torch's norms at the same hook, tiny models from configs."""

from __future__ import annotations

import copy
import importlib
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import transformers
from _grad_oracle import ForwardOrder, layer_norms, own_layers

import gradwidget as gw
from gradwidget.integrations.transformers import GradWidgetCallback

VOCAB, LENGTH = 64, 12


def tiny_gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=LENGTH, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def tiny_bert() -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=LENGTH, num_labels=3,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def rows(language_model: bool, n: int = 96) -> list[dict[str, torch.Tensor]]:
    """A Trainer dataset: one dict per example, as a tokenizer's output with labels."""
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (n, LENGTH), generator=gen)
    labels = ids if language_model else torch.randint(0, 3, (n,), generator=gen)
    return [{"input_ids": i, "labels": y} for i, y in zip(ids, labels, strict=True)]


class Oracle(transformers.TrainerCallback):
    """Registered after gradwidget's: reads every layer's p.grad at the same hook."""

    def __init__(self) -> None:
        self.rows: list[np.ndarray] = []

    def on_train_begin(self, args, state, control, model, **kwargs) -> None:
        self.layers, self.order = own_layers(model), ForwardOrder(model)

    def on_pre_optimizer_step(self, args, state, control, **kwargs) -> None:
        self.order.remove()
        self.rows.append(layer_norms(self.layers, tuple(self.order.order)))


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the Trainer's output_dir, though it saves nothing


def train(model, data, *callbacks, **options) -> transformers.Trainer:
    args = transformers.TrainingArguments(
        output_dir="out", use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
        per_device_train_batch_size=8, logging_steps=1, learning_rate=1e-3, seed=0, **options,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=data, callbacks=list(callbacks)
    )
    trainer.train()
    return trainer


@pytest.mark.parametrize("max_grad_norm", [0.0, 1.0])
@pytest.mark.parametrize(("make", "language_model"), [(tiny_gpt2, True), (tiny_bert, False)])
def test_norms_and_losses_equal_torch_and_the_trainer(make, language_model, max_grad_norm):
    torch.manual_seed(0)
    callback, oracle = GradWidgetCallback(display=False, budget=None), Oracle()
    trainer = train(
        make(), rows(language_model), callback, oracle, max_steps=6, max_grad_norm=max_grad_norm,
        gradient_accumulation_steps=2,
    )  # fmt: skip
    history = callback.history
    assert history.layers == tuple(oracle.order.order)  # forward order, as torch ran them
    np.testing.assert_allclose(history.grad_norm, np.stack(oracle.rows), rtol=1e-5)
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    np.testing.assert_allclose(history.series("train_loss").last.ravel(), logged, rtol=1e-5)


def test_clipping_shows_in_the_norms_at_the_hook():
    """max_grad_norm=1 reaches the hook clipped: the total of the layers' norms is at most 1."""
    torch.manual_seed(0)
    callback = GradWidgetCallback(display=False, budget=None)
    train(tiny_gpt2(), rows(True), callback, max_steps=3, max_grad_norm=1e-3)
    total = np.sqrt(np.nansum(np.square(callback.history.grad_norm), axis=1))
    np.testing.assert_allclose(total, 1e-3, rtol=1e-3)


@pytest.mark.parametrize("already_unscaled", [False, True], ids=["scaled", "unscaled"])
def test_fp16_gradients_are_unscaled_once_whoever_unscaled_them(already_unscaled):
    """As accelerate's AcceleratedOptimizer (``.optimizer``, ``.scaler``) hands them over."""
    torch.manual_seed(0)
    model = gw.models.deep_mlp(depth=3, width=16, in_features=8, out_features=4)
    twin = copy.deepcopy(model)
    x, y = torch.randn(32, 8), torch.randint(0, 4, (32,))
    torch.nn.functional.cross_entropy(twin(x), y).backward()  # the oracle: never scaled
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    callback = GradWidgetCallback(display=False, budget=None)
    state = SimpleNamespace(is_world_process_zero=True)
    callback.on_train_begin(None, state, None, model=model)
    scaler.scale(torch.nn.functional.cross_entropy(model(x), y)).backward()
    if already_unscaled:  # transformers 5.x: clip_grad_norm_ unscaled them before the hook
        scaler.unscale_(optimizer)
    accelerated = SimpleNamespace(optimizer=optimizer, scaler=scaler)
    callback.on_pre_optimizer_step(None, state, None, optimizer=accelerated)
    callback.on_train_end(None, state, None)
    scaler.step(optimizer)  # the callback left the scaler's own bookkeeping alone
    scaler.update()
    names = callback.history.layers
    expected = layer_norms(own_layers(twin), names)
    np.testing.assert_allclose(callback.history.grad_norm[0], expected, rtol=1e-5)


def test_a_compiled_model_is_recorded():
    torch._dynamo.reset()
    callback, oracle = GradWidgetCallback(display=False, budget=None, act_every=0), Oracle()
    train(
        tiny_bert(), rows(False, 32), callback, oracle, max_steps=3,
        torch_compile=True, torch_compile_backend="eager",
    )  # fmt: skip
    np.testing.assert_allclose(callback.history.grad_norm, np.stack(oracle.rows), rtol=1e-5)
    assert np.isfinite(callback.history.series("train_loss").last).all()


def test_without_transformers_the_import_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "transformers", None)
    monkeypatch.delitem(sys.modules, "gradwidget.integrations.transformers")
    with pytest.raises(gw.GradWidgetError, match=r"pip install 'gradwidget\[transformers\]'"):
        importlib.import_module("gradwidget.integrations.transformers")


def test_display_shows_a_panel_whose_fixes_work_and_leaves_no_hook():
    model = tiny_bert()
    callback = GradWidgetCallback(budget=None)
    train(model, rows(False, 32), callback, max_steps=2)
    panel = callback.panel
    try:
        assert isinstance(panel, gw.GradPanel)
        assert panel.recorder.history.grad_norm.shape == (2, len(own_layers(model)))
        fixed = panel.remedied_model(["he_init"])
        assert fixed is not model and type(fixed) is type(model)
        assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())
    finally:
        panel.close()


def test_other_processes_record_without_a_panel():
    model = tiny_bert()
    state = SimpleNamespace(is_world_process_zero=False)
    callback = GradWidgetCallback()  # display=True, but this is not process zero
    callback.on_train_begin(None, state, None, model=model)
    ids, labels = torch.randint(0, VOCAB, (4, LENGTH)), torch.randint(0, 3, (4,))
    loss = model(input_ids=ids, labels=labels).loss
    loss.backward()
    callback.on_pre_optimizer_step(None, state, None, optimizer=None)
    callback.on_train_end(None, state, None)
    assert callback.panel is None
    assert callback.history.series("train_loss").last[0, 0] == pytest.approx(loss.item())


def test_close_after_a_failed_train_leaves_no_hook():
    model, data = tiny_bert(), rows(False, 16)
    data[9]["input_ids"] = torch.full((LENGTH,), VOCAB + 5)  # a token the embedding lacks
    callback = GradWidgetCallback(display=False)
    with pytest.raises(IndexError):
        train(model, data, callback, max_steps=2)
    assert any(m._forward_hooks for m in model.modules())  # the Trainer called no callback
    callback.close()
    callback.close()
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_a_loss_the_model_never_returns_is_left_out_not_made_nan():
    class OwnLoss(transformers.Trainer):  # computes the loss itself: the model sees no labels
        def compute_loss(self, model, inputs, return_outputs=False, **kwargs):
            logits = model(input_ids=inputs["input_ids"]).logits
            return torch.nn.functional.cross_entropy(logits, inputs["labels"])

    callback = GradWidgetCallback(display=False, budget=None)
    args = transformers.TrainingArguments(
        output_dir="out", use_cpu=True, report_to=[], save_strategy="no", disable_tqdm=True,
        per_device_train_batch_size=8, max_steps=2,
    )  # fmt: skip
    OwnLoss(
        model=tiny_bert(), args=args, train_dataset=rows(False, 16), callbacks=[callback]
    ).train()
    history = callback.history
    assert "train_loss" not in history.metrics
    assert history.grad_norm.shape[0] == 2 and np.isfinite(history.grad_norm).all()
