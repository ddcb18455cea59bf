"""Model structure from layer names: blocks, kinds, short names, block norms (torch the oracle)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradwidget as gw

transformers = pytest.importorskip("transformers")  # in the test extra: never skipped in CI
torch.set_num_threads(1)


def gpt2() -> nn.Module:
    config = transformers.GPT2Config(n_layer=12, n_embd=64, n_head=4, vocab_size=256)
    return transformers.GPT2LMHeadModel(config)


def bert() -> nn.Module:
    config = transformers.BertConfig(
        hidden_size=64, num_hidden_layers=6, num_attention_heads=4, intermediate_size=128,
        vocab_size=256, num_labels=3,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def resnet() -> nn.Module:
    config = transformers.ResNetConfig(
        layer_type="basic", depths=[2, 2, 2, 2], hidden_sizes=[32, 64, 128, 256],
        embedding_size=32, num_labels=3,
    )  # fmt: skip
    return transformers.ResNetForImageClassification(config)


def vit() -> nn.Module:
    config = transformers.ViTConfig(
        image_size=32, patch_size=4, hidden_size=64, num_hidden_layers=6, num_attention_heads=4,
        intermediate_size=128, num_labels=3,
    )  # fmt: skip
    return transformers.ViTForImageClassification(config)


class Wide(nn.Module):
    """A hand-made 500-layer model: 50 numbered blocks of 10 layers, a stem and a head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Linear(4, 8)
        self.blocks = nn.ModuleList(
            nn.Sequential(*(nn.Linear(8, 8) if i % 2 == 0 else nn.LayerNorm(8) for i in range(10)))
            for _ in range(50)
        )
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for b in self.blocks:
            x = x + b(x)
        return self.head(x)


def test_gpt2_blocks_kinds_short_names_and_tooltips() -> None:
    s = gw.layer_groups(gpt2())
    assert len(s.layers) == 75  # the tied lm_head shares wte's weight: not a layer of its own
    assert [g.short for g in s.groups] == ["wte", "wpe", *(f"h.{i}" for i in range(12)), "ln_f"]
    assert [len(b.layers) for b in s.blocks] == [6] * 12
    info = {i.short: i for i in s.layers}
    assert info["h.3.attn.c_attn"].kind == "attention"
    assert info["h.3.attn.c_attn"].block == "transformer.h.3"
    assert info["h.3.mlp.c_fc"].kind == "mlp" and info["h.3.ln_2"].kind == "norm"
    assert info["wte"].kind == "embedding" and info["ln_f"].kind == "norm"
    assert info["h.3.attn.c_attn"].tooltip == (
        "transformer.h.3.attn.c_attn · Conv1D · 12,480 parameters"
    )
    assert len({i.short for i in s.layers}) == 75  # unambiguous


@pytest.mark.parametrize(
    ("build", "n_layers", "n_blocks", "block"),
    [(bert, 54, 6, "bert.encoder.layer.5"), (resnet, 41, 4, "resnet.encoder.stages.3"),
     (vit, 52, 6, "vit.layers.5")],
)  # fmt: skip
def test_blocks_of_real_models(build, n_layers: int, n_blocks: int, block: str) -> None:
    model = build()
    s = gw.layer_groups(model)
    assert len(s.layers) == n_layers and len(s.blocks) == n_blocks
    assert s.blocks[-1].name == block
    assert s.layers[-1].kind == "head"
    assert sum(i.params for i in s.layers) == sum(p.numel() for p in model.parameters())
    assert all(not g.is_block for g in s.groups if g not in s.blocks)
    assert len({i.short for i in s.layers}) == n_layers


def test_names_alone_give_the_same_blocks_and_names_as_the_model() -> None:
    model = bert()
    with_model = gw.layer_groups(model)
    names_only = gw.layer_groups(with_model.names)
    assert names_only.groups == with_model.groups
    assert [i.short for i in names_only.layers] == [i.short for i in with_model.layers]
    assert [i.kind for i in names_only.layers] == [i.kind for i in with_model.layers]
    assert names_only.layers[0].tooltip == with_model.layers[0].name


def test_a_plain_mlp_has_no_blocks_and_keeps_its_names() -> None:
    s = gw.layer_groups(gw.models.deep_mlp(depth=10))
    assert s.blocks == () and [g.short for g in s.groups] == [str(2 * i) for i in range(10)]


def test_500_layers_in_50_blocks() -> None:
    s = gw.layer_groups(Wide())
    assert len(s.layers) == 502 and len(s.blocks) == 50
    assert s.blocks[7].short == "blocks.7" and s.layers[-1].kind == "head"


def _train_step(model: nn.Module, recorder: gw.Recorder, loss: torch.Tensor) -> None:
    model.zero_grad()
    loss.backward()
    recorder.capture(loss, force=True)


@pytest.mark.parametrize("build", [gpt2, resnet, Wide])
def test_block_norms_equal_torch_norm_over_the_block_gradients(build) -> None:
    torch.manual_seed(0)
    model = build()
    with gw.Recorder(model, act_every=0) as recorder:
        if build is gpt2:
            x = torch.randint(0, 256, (2, 16))
            loss = model(input_ids=x, labels=x).loss
        elif build is resnet:
            loss = F.cross_entropy(model(torch.randn(2, 3, 32, 32)).logits, torch.tensor([0, 1]))
        else:
            loss = model(torch.randn(3, 4)).square().mean()
        _train_step(model, recorder, loss)
        history = recorder.history
    s = gw.layer_groups(history, model)
    grouped = gw.grouped_history(history, s)
    modules = dict(model.named_modules())
    for j, group in enumerate(s.groups):
        params = [p for i in group.layers for p in _own(modules, s.layers[i].name)]
        expected = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in params]))
        assert grouped.grad_norm[-1, j] == pytest.approx(expected.item(), rel=1e-4)
    assert grouped.layers == tuple(g.name for g in s.groups)
    np.testing.assert_array_equal(grouped.loss, history.loss)


def _own(modules: dict, name: str) -> list[nn.Parameter]:
    return list(modules[name].parameters(recurse=False))


def test_group_norms_ignore_missing_gradients_and_keep_all_missing_as_nan() -> None:
    s = gw.layer_groups(["a.0.x", "a.0.y", "a.1.x", "a.1.y", "out"])
    norms = s.group_norms(np.array([3.0, 4.0, np.nan, np.nan, np.nan]))
    assert norms[0] == 5.0 and np.isnan(norms[1]) and np.isnan(norms[2])


def test_the_diagnosis_names_a_block_whose_every_layer_is_affected() -> None:
    layers = ["wte", *(f"h.{b}.{p}" for b in range(3) for p in ("ln", "attn", "mlp")), "head"]
    history = gw.History(layers, 64)
    norms = np.ones(len(layers))
    norms[:4] = 1e-9  # the embedding and every layer of block h.0 barely get a gradient
    norms[5] = 1e-9  # and one layer of h.1, not all of it
    for step in range(40):
        history.append("grad_norm", step, norms)
    (finding,) = [f for f in gw.diagnose(history) if f.kind == "vanishing"]
    assert "block h.0 (all 3 layers, 1e-09 to 1e-09)" in finding.message
    assert "h.1.attn (1e-09)" in finding.message and "h.0.ln (" not in finding.message
    assert finding.layers == ("wte", "h.0.ln", "h.0.attn", "h.0.mlp", "h.1.attn")


def test_structure_is_numpy_only_so_the_diagnosis_may_use_it() -> None:
    import ast
    from pathlib import Path

    allowed = {"__future__", "re", "collections", "collections.abc", "dataclasses", "functools"}
    allowed |= {"typing", "numpy", "history", "_naming"}
    folder = Path(gw.structure.__file__).parent
    for module in ("structure.py", "_naming.py"):
        tree = ast.parse((folder / module).read_text())
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert imported <= allowed, module
