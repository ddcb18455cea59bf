"""The fourth cure and the rest of the model toolbox: residual, LayerNorm, activations, Glorot.

Torch is the oracle: hand-built twins, torch.nn.init and torch.nn.functional. (Every model
remedy is also run on every model of ``test_remedies.py``: input untouched, shape kept.)
"""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from test_remedies import build, call_order, mlp, snapshot
from torch import nn

import gradwidget as gw
from gradwidget import remedies
from gradwidget.errors import RemedyNotApplicable

torch.set_num_threads(1)


def square_mlp(
    depth: int = 5, width: int = 8, activation: type[nn.Module] = nn.Tanh
) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), activation()]
    return nn.Sequential(*layers, nn.Linear(width, 3))


# -- residual ----------------------------------------------------------------------------------


def test_residual_wraps_each_hidden_block_and_matches_x_plus_f_x() -> None:
    model, x = square_mlp(), torch.randn(5, 8)
    before = snapshot(model)
    remedied = remedies.add_residual(model)
    assert snapshot(model)["state"].keys() == before["state"].keys()
    assert repr(model) == before["repr"]  # the input is untouched
    assert [type(m) for m in remedied] == [remedies.Residual] * 4 + [nn.Linear]
    assert all([type(m) for m in block] == [nn.Linear, nn.Tanh] for block in remedied[:4])
    expected = x
    for i in range(0, 8, 2):  # the oracle: the original layers, with x + f(x) by hand
        expected = expected + torch.tanh(model[i](expected))
    torch.testing.assert_close(remedied(x), model[8](expected), rtol=0, atol=0)
    assert remedies.check(model, "residual").summary == "x + f(x) around 4 Linear+Tanh blocks"


def test_a_residual_block_returns_its_input_when_its_inner_weights_are_zero() -> None:
    remedied, x = remedies.add_residual(square_mlp()), torch.randn(5, 8)
    block = remedied[1]
    with torch.no_grad():
        for p in block.parameters():
            p.zero_()
    torch.testing.assert_close(block(x), x, rtol=0, atol=0)  # x + tanh(0 x + 0) = x


def test_residual_carries_the_gradient_through_a_deep_sigmoid_stack() -> None:
    model, x = square_mlp(depth=20, width=16, activation=nn.Sigmoid), torch.randn(32, 16)

    def first_over_last(net: nn.Module) -> float:
        net.zero_grad()
        F.cross_entropy(net(x), torch.zeros(32, dtype=torch.long)).backward()
        linears = [m for m in net.modules() if isinstance(m, nn.Linear)]
        return (linears[0].weight.grad.norm() / linears[-1].weight.grad.norm()).item()

    assert first_over_last(model) < 1e-6
    assert first_over_last(remedies.add_residual(model)) > 1e-3  # 1000x the plain stack


def test_residual_nested_custom_blocks_and_code() -> None:
    model, x = build("nested")  # stem 6 -> 8 changes the width; each Block(8) keeps it
    remedied = remedies.add_residual(model)
    assert type(remedied.stem[0]) is nn.Linear  # not a block: 6 -> 8
    assert all(type(b) is remedies.Residual and type(b[0]) is type(model.blocks[0])
               for b in remedied.blocks)  # fmt: skip
    h = model.stem(x)
    for block in model.blocks:
        h = h + block(h)
    torch.testing.assert_close(remedied(x), model.head(h), rtol=0, atol=0)
    assert remedies.check(model, "residual").summary == "x + f(x) around 2 Block blocks"
    restored = pickle.loads(pickle.dumps(remedied))
    torch.testing.assert_close(restored(x), remedied(x), rtol=0, atol=0)


def test_residual_code_does_what_the_remedy_does_on_a_sequential() -> None:
    model, x = square_mlp(), torch.randn(5, 8)
    pasted = copy.deepcopy(model)
    exec(remedies.check(model, "residual").code, {"model": pasted})
    remedied = remedies.add_residual(model)
    assert pasted.state_dict().keys() == remedied.state_dict().keys()
    torch.testing.assert_close(pasted(x), remedied(x), rtol=0, atol=0)


def test_residual_keeps_norms_inside_the_block_and_combines_with_batchnorm() -> None:
    torch.manual_seed(0)
    model = gw.models.deep_mlp(4, 8, "sigmoid", in_features=8, out_features=3, batchnorm=True)
    remedied = remedies.add_residual(model)
    assert [type(m) for m in remedied[0]] == [nn.Linear, nn.BatchNorm1d, nn.Sigmoid]
    combined = remedies.apply_remedies(square_mlp(), ["he_init", "batchnorm", "residual"])
    x = torch.randn(5, 8)
    assert call_order(combined, x)[:3] == ["0.0.0", "0.0.1", "0.1"]  # x + tanh(BN(Wx))
    assert combined(x).shape == (5, 3)


def test_residual_conv_blocks_only_where_channels_and_size_are_kept() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),  # 1 -> 4 channels
        nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(),  # kept
        nn.Conv2d(4, 4, 5, padding="same"), nn.GELU(),  # kept
        nn.Conv2d(4, 4, 3, stride=2, padding=1), nn.ReLU(),  # halves the size
        nn.Flatten(), nn.Linear(64, 3),
    )  # fmt: skip
    remedied = remedies.add_residual(model)
    assert [type(m).__name__ for m in remedied][:5] == [
        "Conv2d", "ReLU", "Residual", "Residual", "Conv2d",
    ]  # fmt: skip
    x = torch.randn(2, 1, 8, 8)
    h = model[1](model[0](x))
    h = h + model[3](model[2](h))
    h = h + model[5](model[4](h))
    torch.testing.assert_close(remedied(x), model[6:](h), rtol=0, atol=0)


def test_residual_leaves_forwards_that_are_not_a_chain_alone() -> None:
    class Reshaping(nn.Module):  # keeps the Linear's width but changes the shape
        def __init__(self) -> None:
            super().__init__()
            self.fc, self.act = nn.Linear(8, 8), nn.Tanh()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.fc(x)).reshape(-1, 2, 4).sum(1)

    class Branching(Reshaping):  # uses its input twice: already more than f(x)
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.act(self.fc(x)) * x

    class InPlaceFirst(Reshaping):  # changes x itself before x + f(x) could add it
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x.tanh_())

    for block in (Reshaping(), Branching(), InPlaceFirst()):
        width = 4 if type(block) is Reshaping else 8
        model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), block, nn.Linear(width, 3))
        with pytest.raises(RemedyNotApplicable, match="no hidden block whose output has"):
            remedies.check(model, "residual")
    # An in-place first step stays outside: relu_(h), then h + tanh(W h).
    model = nn.Sequential(nn.ReLU(inplace=True), nn.Linear(8, 8), nn.Tanh())
    remedied, x = remedies.add_residual(nn.Sequential(model, nn.Linear(8, 3))), torch.randn(5, 8)
    assert [type(m) for m in remedied[0]] == [nn.ReLU, remedies.Residual]
    h = torch.relu(x)
    torch.testing.assert_close(remedied(x.clone()), remedied[1](h + model[2](model[1](h))))


def test_residual_refusals_say_why() -> None:
    with pytest.raises(RemedyNotApplicable, match="cannot be added without a projection"):
        remedies.check(gw.models.small_cnn(), "residual")
    with pytest.raises(RemedyNotApplicable, match="already has skip connections"):
        remedies.add_residual(remedies.add_residual(square_mlp()))
    output_only = nn.Sequential(nn.Linear(8, 8), nn.Sigmoid())  # the output layer is no block
    with pytest.raises(RemedyNotApplicable, match="no hidden block"):
        remedies.add_residual(output_only)


# -- LayerNorm -----------------------------------------------------------------------------------


def test_layernorm_after_each_hidden_linear_before_its_activation() -> None:
    model, x = build("mlp")
    remedied = remedies.add_layernorm(model)
    assert call_order(remedied, x) == ["0.0", "0.1", "1", "2.0", "2.1", "3", "4.0", "4.1", "5", "6"]
    assert all(type(remedied[i][1]) is nn.LayerNorm for i in (0, 2, 4))
    assert isinstance(remedied[6], nn.Linear)
    expected = F.layer_norm(model[0](x), (8,))  # per row, over the features
    torch.testing.assert_close(remedied[0](x), expected)
    summary = remedies.check(model, "layernorm").summary
    assert summary == "LayerNorm after 3 Linear layers (not the output layer)"


def test_layernorm_on_sequences_and_conv_layers() -> None:
    model, x = build("transformer")  # LayerNorms inside torch's encoder layers do not count
    remedied = remedies.add_layernorm(model)
    h = remedied.embed[0](x)
    torch.testing.assert_close(remedied.embed(x), F.layer_norm(h, (16,)))
    assert remedied(x).shape == (5, 4, 3)
    cnn_model, images = build("cnn")
    conv = remedies.add_layernorm(cnn_model)[0]
    assert type(conv[1]) is nn.GroupNorm and conv[1].num_groups == 1
    y = cnn_model[0](images)
    torch.testing.assert_close(conv(images), F.layer_norm(y, y.shape[1:]), rtol=1e-5, atol=1e-5)


def test_batch_size_one_refuses_batchnorm_and_suggests_layernorm() -> None:
    model, settings = square_mlp(), gw.TrainConfig(batch_size=1)
    with pytest.raises(RemedyNotApplicable, match=r"batch size is 1.*LayerNorm"):
        remedies.check(model, "batchnorm", settings)
    assert remedies.suggest(["relu", "batchnorm"], model, settings) == ("relu", "layernorm")
    assert remedies.suggest(["batchnorm"], model) == ("batchnorm",)  # fits at batch size 64
    # What a fix bar already checked stands in for the checks (which copy the model).
    known = {"relu", "layernorm"}
    assert remedies.suggest(["relu", "batchnorm"], model, applicable=known) == ("relu", "layernorm")
    assert remedies.suggest(["batchnorm"], model, applicable={"relu"}) == ("batchnorm",)
    fixed = remedies.apply_remedies(model, ["layernorm"], settings=settings)
    data = (torch.randn(6, 8), torch.randint(0, 3, (6,)))
    run = gw.train(fixed, data, steps=3, batch_size=1)
    assert run.state is gw.RunState.FINISHED and torch.isfinite(torch.tensor(run.loss))


def test_layernorm_refused_next_to_existing_norms() -> None:
    with_bn = remedies.add_batchnorm(square_mlp())
    with pytest.raises(RemedyNotApplicable, match=r"already has BatchNorm1d.*normalise twice"):
        remedies.check(with_bn, "layernorm")
    assert remedies.suggest(["batchnorm"], with_bn) == ("batchnorm",)  # no stand-in fits
    with pytest.raises(RemedyNotApplicable, match="already has LayerNorm"):
        remedies.add_layernorm(remedies.add_layernorm(square_mlp()))
    with pytest.raises(ValueError, match="batchnorm and layernorm both change the normalisation"):
        remedies.apply_remedies(square_mlp(), ["batchnorm", "layernorm"])


# -- activations: one swap, three targets --------------------------------------------------------


@pytest.mark.parametrize(("name", "module"), [("leaky_relu", nn.LeakyReLU), ("gelu", nn.GELU)])
def test_leaky_relu_and_gelu_replace_saturating_and_relu_modules(name: str, module: type) -> None:
    model = nn.Sequential(
        nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3), nn.Sigmoid()
    )
    remedied = remedies.use_activation(model, name)
    assert [type(remedied[i]) for i in (1, 3, 5)] == [module, module, nn.Sigmoid]  # output kept
    twin = copy.deepcopy(model)
    twin[1], twin[3] = module(), module()
    x = torch.randn(5, 6)
    torch.testing.assert_close(remedied(x), twin(x), rtol=0, atol=0)
    assert "1 ReLU, 1 Tanh ->" in remedies.check(model, name).summary
    with pytest.raises(RemedyNotApplicable, match="nothing to replace by ReLU"):
        remedies.check(model[:2], "relu")  # ReLU replaces only saturating activations


def test_gelu_rewrites_functional_calls_through_fx_even_in_place() -> None:
    class Calls(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = torch.relu(self.a(x))
            g = self.b(h)
            g.tanh_()  # only the side effect is used: the rewrite must stay in place
            return self.c(g)

    model, x = Calls(), torch.randn(5, 6)
    expected = model.c(F.gelu(model.b(F.gelu(model.a(x)))))
    torch.testing.assert_close(remedies.use_activation(model, "gelu")(x), expected)
    leaky = model.c(F.leaky_relu(model.b(F.leaky_relu(model.a(x)))))
    torch.testing.assert_close(remedies.use_activation(model, "leaky_relu")(x), leaky)


def test_activation_rivals_and_unknown_targets() -> None:
    with pytest.raises(ValueError, match="relu and gelu both change the activation"):
        remedies.apply_remedies(mlp(), ["gelu", "relu"])
    with pytest.raises(ValueError, match="Unknown activation 'swish'"):
        remedies.use_activation(mlp(), "swish")


# -- Glorot (Xavier) initialisation -------------------------------------------------------------


def test_xavier_init_is_torchs_glorot_uniform_from_the_seed() -> None:
    model = nn.Sequential(nn.Linear(512, 256), nn.Tanh(), nn.Conv2d(64, 32, 3), nn.Linear(256, 2))
    rng_before = torch.random.get_rng_state()
    remedied = remedies.xavier_init(model, seed=4)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    oracle = nn.init.xavier_uniform_(
        torch.empty(256, 512), generator=torch.Generator().manual_seed(4)
    )
    assert torch.equal(remedied[0].weight, oracle)  # the first layer takes the first draws
    for layer, fan_in, fan_out in ((remedied[0], 512, 256), (remedied[2], 64 * 9, 32 * 9)):
        expected = (2 / (fan_in + fan_out)) ** 0.5  # Glorot & Bengio (2010)
        assert abs(layer.weight.std().item() - expected) < 0.05 * expected
        assert torch.count_nonzero(layer.bias) == 0
    he = remedies.he_init(model, seed=4)[0].weight.std().item()
    assert he == pytest.approx((2 / 512) ** 0.5, rel=0.05)  # the same code, another rule
    with pytest.raises(ValueError, match="he_init and xavier_init both change the initialisation"):
        remedies.apply_remedies(model, ["he_init", "xavier_init"])
