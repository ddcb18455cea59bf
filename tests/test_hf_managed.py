"""Hugging Face models in the panel's managed mode: outputs with .logits, the model's own loss,
dict batches; torch (the model's own forward and backward on a twin) is the oracle."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import transformers
from _grad_oracle import layer_norms, own_layers
from torch import nn

import gradwidget as gw

VOCAB, LENGTH, ROWS = 50, 8, 16


def tiny_bert() -> nn.Module:
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, max_position_embeddings=LENGTH, num_labels=3,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,  # one loss per batch
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def tiny_gpt2() -> nn.Module:
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_positions=LENGTH, n_embd=16, n_layer=1, n_head=2, bos_token_id=0,
        eos_token_id=0, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


@pytest.fixture
def ids() -> torch.Tensor:
    return torch.randint(0, VOCAB, (ROWS, LENGTH), generator=torch.Generator().manual_seed(0))


@pytest.fixture
def classes() -> torch.Tensor:
    return torch.randint(0, 3, (ROWS,), generator=torch.Generator().manual_seed(1))


def first_step(model: nn.Module, data: object, **config: object) -> tuple:
    """Train one step on all rows at once: the recorded loss, gradient norms and layers."""
    run = gw.train(model, data, steps=1, batch_size=ROWS, **config)
    history = run.history
    return float(history.series("train_loss").last[0, 0]), history.grad_norm[0], history.layers


def oracle(model: nn.Module, names: tuple[str, ...], **inputs: torch.Tensor):
    """The loss the model computes and each layer's gradient norm, in plain torch."""
    loss = model(**inputs).loss
    loss.backward()
    return loss.item(), layer_norms(own_layers(model), names)


@pytest.mark.parametrize(
    "shape", ["pair", "columns", "batches"], ids=["(ids, y)", "dict of columns", "dict batches"]
)
def test_bert_trains_on_its_own_loss_as_torch_computes_it(ids, classes, shape) -> None:
    torch.manual_seed(0)
    model = tiny_bert()
    twin = copy.deepcopy(model)
    mask = torch.ones_like(ids)
    data = {
        "pair": (ids, classes),
        "columns": {"input_ids": ids, "attention_mask": mask, "labels": classes},
        "batches": [{"input_ids": ids, "attention_mask": mask, "labels": classes}],
    }[shape]
    loss, norms, names = first_step(model, data)
    expected_loss, expected_norms = oracle(twin, names, input_ids=ids, labels=classes)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(norms, expected_norms, rtol=1e-4)
    assert names[0] == "bert.embeddings.word_embeddings" and names[-1] == "classifier"


def test_gpt2_learns_its_own_next_token_loss(ids) -> None:
    torch.manual_seed(0)
    model = tiny_gpt2()
    twin = copy.deepcopy(model)
    loss, norms, names = first_step(model, (ids, ids))
    expected_loss, expected_norms = oracle(twin, names, input_ids=ids, labels=ids)
    assert loss == pytest.approx(expected_loss, rel=1e-5)
    np.testing.assert_allclose(norms, expected_norms, rtol=1e-4)


def test_a_loss_fn_of_ones_own_reads_the_output_as_it_is(ids, classes) -> None:
    seen = []

    def loss_fn(output: object, y: torch.Tensor) -> torch.Tensor:
        seen.append(type(output).__name__)
        return nn.functional.cross_entropy(output.logits, y)

    gw.train(tiny_bert(), (ids, classes), steps=2, batch_size=8, loss_fn=loss_fn)
    assert seen == ["SequenceClassifierOutput"] * 2


def test_the_panel_of_the_issue_trains_a_bert(ids, classes, panels) -> None:
    panel = panels(tiny_bert(), (ids, classes), steps=4, batch_size=8, optimizer="adam", lr=1e-3)
    panel.train()
    assert panel.wait(timeout=60)
    run = panel.runs[0].run
    assert run.state is gw.RunState.FINISHED, run.message
    assert np.isfinite(run.history.grad_norm).all()


class Unreadable(nn.Module):
    """A model whose output carries neither scores nor a loss."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"hidden": self.linear(x)}


class NoLoss(Unreadable):
    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict:
        return {"logits": self.linear(x)}


@pytest.mark.parametrize(
    ("model", "says"),
    [(Unreadable, "returned a dict, but the panel needs"), (NoLoss, "without a loss")],
)
def test_what_the_panel_needs_is_said_in_one_sentence(model, says) -> None:
    data = (torch.randn(8, 4), torch.randint(0, 3, (8,)))
    with pytest.raises(gw.TrainingError, match=says) as error:
        gw.train(model(), data, steps=1)
    assert "loss_fn=" in str(error.value)


def test_a_dict_batch_without_labels_names_the_key(ids) -> None:
    with pytest.raises(gw.DataError, match="'labels'"):
        gw.train(tiny_gpt2(), [{"input_ids": ids}], steps=1)
