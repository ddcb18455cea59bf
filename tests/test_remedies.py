"""Remedies: input untouched, structure right, torch itself as the oracle for numbers."""

from __future__ import annotations

import copy
import pickle
import threading

import pytest
import torch
import torch.nn.functional as F
from _zoo import Block
from torch import fx, nn

from gradwidget import remedies
from gradwidget.errors import RemedyNotApplicable

torch.set_num_threads(1)


# -- small models -------------------------------------------------------------------------------


def mlp(activation: type[nn.Module] = nn.Sigmoid, depth: int = 4, width: int = 8) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth - 1):
        layers += [nn.Linear(6 if i == 0 else width, width), activation()]
    return nn.Sequential(*layers, nn.Linear(width, 3))


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(6, 8), nn.Sigmoid())
        self.blocks = nn.ModuleList([Block(8), Block(8)])
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def cnn() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Conv2d(4, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(64, 3)
    )


class Functional(nn.Module):
    """Saturating activations only as calls in forward, plus an output sigmoid."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.tanh(self.a(x))
        h = torch.sigmoid(self.b(h)) + self.b(h).tanh()
        return torch.sigmoid(self.c(h))


class FunctionalReluTwin(Functional):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.a(x))
        h = torch.relu(self.b(h)) + torch.relu(self.b(h))
        return torch.sigmoid(self.c(h))


class Untraceable(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(6, 8), nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.a(x)
        if h.sum() > 0:  # data-dependent: torch.fx cannot follow it
            h = torch.tanh(h)
        return self.b(h)


class Recurrent(nn.Module):
    def __init__(self, head_activation: nn.Module | None = None) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 8, batch_first=True)
        self.fc = nn.Linear(8, 8)
        self.act = head_activation or nn.Identity()
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(self.act(self.fc(out[:, -1])))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(6, 16)
        layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(x)))


def inplace_relu_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(6, 8), nn.ReLU(inplace=True), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 3)
    )


MODELS = {
    "mlp": (lambda: mlp(), (5, 6)),
    "nested": (Nested, (5, 6)),
    "cnn": (cnn, (5, 1, 8, 8)),
    "functional": (Functional, (5, 6)),
    "untraceable": (Untraceable, (5, 6)),
    "lstm": (Recurrent, (5, 4, 6)),
    "transformer": (Encoder, (5, 4, 6)),
    "inplace_relu": (inplace_relu_net, (5, 6)),
}
APPLY = {
    "relu": remedies.use_relu,
    "leaky_relu": lambda model: remedies.use_activation(model, "leaky_relu"),
    "gelu": lambda model: remedies.use_activation(model, "gelu"),
    "he_init": remedies.he_init,
    "xavier_init": remedies.xavier_init,
    "batchnorm": remedies.add_batchnorm,
    "layernorm": remedies.add_layernorm,
    "residual": remedies.add_residual,
}


def build(key: str) -> tuple[nn.Module, torch.Tensor]:
    factory, shape = MODELS[key]
    torch.manual_seed(0)
    return factory(), torch.randn(shape)


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "repr": repr(model),
        "types": [(name, type(m)) for name, m in model.named_modules()],
        "hooks": [
            (name, attr, dict(getattr(m, attr)))
            for name, m in model.named_modules()
            for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
        ],
    }


def assert_same(before: dict, after: dict) -> None:
    assert before["repr"] == after["repr"]
    assert before["types"] == after["types"]
    assert before["hooks"] == after["hooks"]
    assert before["state"].keys() == after["state"].keys()
    assert all(torch.equal(before["state"][k], after["state"][k]) for k in before["state"])


def call_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of leaf modules in the order forward runs them."""
    order: list[str] = []
    handles = [
        m.register_forward_hook(lambda *_, name=name: order.append(name))
        for name, m in model.named_modules()
        if not list(m.children())
    ]
    model(x)
    for handle in handles:
        handle.remove()
    return order


# -- every remedy, every model ------------------------------------------------------------------


@pytest.mark.parametrize("name", remedies.REMEDY_NAMES)
@pytest.mark.parametrize("key", MODELS)
def test_input_untouched_and_shape_kept(key: str, name: str) -> None:
    model, x = build(key)
    model.register_forward_hook(lambda *_: None)
    before = snapshot(model)
    expected = model(x).shape
    try:
        remedied = APPLY[name](model)
    except RemedyNotApplicable:
        assert_same(before, snapshot(model))
        return
    assert_same(before, snapshot(model))
    assert remedied is not model
    assert remedied(x).shape == expected
    remedied(x).sum().backward()  # trains: gradients flow through the new modules


@pytest.mark.parametrize("name", remedies.REMEDY_NAMES)
@pytest.mark.parametrize("key", MODELS)
def test_check_raises_exactly_when_applying_would(key: str, name: str) -> None:
    model, _ = build(key)
    try:
        APPLY[name](model)
    except RemedyNotApplicable:
        with pytest.raises(RemedyNotApplicable):
            remedies.check(model, name)
    else:
        change = remedies.check(model, name)
        assert change.name == name and change.summary and change.code


@pytest.mark.parametrize("key", MODELS)
def test_check_all_plans_every_remedy_on_one_copy_as_check_does(
    key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, _ = build(key)
    before = snapshot(model)
    copies = []
    copy_once = remedies._apply.copy_without_hooks
    monkeypatch.setattr(
        remedies._apply, "copy_without_hooks", lambda m: copies.append(1) or copy_once(m)
    )
    names = [*remedies.REMEDY_NAMES, *remedies.SETTINGS_NAMES]
    outcomes = remedies.check_all(model, names)
    assert len(copies) == 1  # one copy for the eight model remedies, none for settings
    assert_same(before, snapshot(model))
    for name in names:  # each as if planned alone, on its own fresh copy
        try:
            alone = remedies.check(model, name)
        except RemedyNotApplicable as why:
            assert isinstance(outcomes[name], RemedyNotApplicable)
            assert str(outcomes[name]) == str(why)
        else:
            assert outcomes[name] == alone


def test_names_and_labels() -> None:
    assert remedies.REMEDY_NAMES[:3] == ("relu", "leaky_relu", "gelu")
    assert set(APPLY) == set(remedies.REMEDY_NAMES)  # every model remedy is tested here
    assert remedies.LABELS["relu"] == "ReLU" and remedies.LABELS["he_init"] == "He init"
    assert remedies.LABELS["batchnorm"] == "BatchNorm"


def test_hooks_are_not_carried_into_the_copy() -> None:
    class Owner:  # like a Recorder: holds a lock, which deepcopy cannot copy
        def __init__(self) -> None:
            self.lock = threading.RLock()
            self.calls = 0

        def hook(self, *_: object) -> None:
            self.calls += 1

    model, x = build("mlp")
    owner = Owner()
    for module in model:
        module.register_forward_hook(owner.hook)
    for name in remedies.REMEDY_NAMES:
        remedied = remedies.apply_remedies(model, [name])
        assert all(not m._forward_hooks for m in remedied.modules())
        remedied(x)
    assert owner.calls == 0
    model(x)
    assert owner.calls == len(model)


# -- use_relu -----------------------------------------------------------------------------------


def test_relu_replaces_modules_and_keeps_output_squashing() -> None:
    model = nn.Sequential(mlp(), nn.Sigmoid())
    change = remedies.check(model, "relu")
    assert change.summary.startswith("3 Sigmoid -> ReLU")
    assert "output Sigmoid" in change.summary
    remedied = remedies.use_relu(model)
    kinds = [type(m) for m in remedied.modules()]
    assert kinds.count(nn.ReLU) == 3 and kinds.count(nn.Sigmoid) == 1
    assert isinstance(remedied[1], nn.Sigmoid)


def test_relu_nested_tree() -> None:
    model, x = build("nested")
    assert remedies.check(model, "relu").summary == "1 Sigmoid, 2 Tanh -> ReLU"
    remedied = remedies.use_relu(model)
    assert type(remedied) is Nested
    assert [type(m) for m in (remedied.stem[1], *(b.act for b in remedied.blocks))] == [nn.ReLU] * 3
    twin = copy.deepcopy(model)
    twin.stem[1] = nn.ReLU()
    for block in twin.blocks:
        block.act = nn.ReLU()
    torch.testing.assert_close(remedied(x), twin(x), rtol=0, atol=0)


def test_relu_functional_calls_via_fx_match_a_hand_written_twin() -> None:
    model, x = build("functional")
    change = remedies.check(model, "relu")
    assert change.summary.startswith("3 calls in forward")
    assert "kept the output sigmoid()" in change.summary
    remedied = remedies.use_relu(model)
    assert isinstance(remedied, fx.GraphModule)
    twin = FunctionalReluTwin()
    twin.load_state_dict(model.state_dict())
    torch.testing.assert_close(remedied(x), twin(x), rtol=0, atol=0)
    assert not torch.allclose(remedied(x), model(x))
    restored = pickle.loads(pickle.dumps(remedied))  # runs can be saved and handed around
    torch.testing.assert_close(restored(x), twin(x), rtol=0, atol=0)


def test_relu_inplace_method_stays_inplace() -> None:
    class InPlace(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.c = nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            h.tanh_()  # only the side effects are used
            g = self.b(h)
            torch.sigmoid_(g)
            return self.c(g)

    model, x = InPlace(), torch.randn(5, 6)
    expected = model.c(torch.relu(model.b(torch.relu(model.a(x)))))
    torch.testing.assert_close(remedies.use_relu(model)(x), expected, rtol=0, atol=0)


def test_relu_untraceable_forward_explains_fx() -> None:
    model, _ = build("untraceable")
    with pytest.raises(RemedyNotApplicable, match=r"torch\.fx could not trace") as info:
        remedies.use_relu(model)
    assert "control flow" in str(info.value)  # fx's own reason
    assert "nn.Sigmoid / nn.Tanh modules" in str(info.value)


def test_relu_untraceable_forward_still_swaps_modules() -> None:
    model = Untraceable()
    model.b = nn.Sequential(nn.Tanh(), nn.Linear(8, 3))
    change = remedies.check(model, "relu")
    assert change.summary.startswith("1 Tanh -> ReLU") and "not checked" in change.summary
    assert isinstance(remedies.use_relu(model).b[0], nn.ReLU)


def test_relu_leaves_recurrent_internals_alone() -> None:
    model, x = build("lstm")
    with pytest.raises(RemedyNotApplicable, match="already uses no saturating activations"):
        remedies.use_relu(model)
    torch.manual_seed(0)
    model = Recurrent(head_activation=nn.Tanh())
    assert remedies.check(model, "relu").summary == "1 Tanh -> ReLU"
    remedied = remedies.use_relu(model)
    assert type(remedied.lstm) is nn.LSTM and isinstance(remedied.act, nn.ReLU)
    expected = model.head(torch.relu(model.fc(model.lstm(x)[0][:, -1])))
    torch.testing.assert_close(remedied(x), expected, rtol=0, atol=0)


def test_relu_shared_activation_module_swapped_in_every_slot() -> None:
    act = nn.Tanh()
    model = nn.Sequential(nn.Linear(6, 8), act, nn.Linear(8, 8), act, nn.Linear(8, 3))
    remedied = remedies.use_relu(model)
    assert isinstance(remedied[1], nn.ReLU) and isinstance(remedied[3], nn.ReLU)


def test_relu_nothing_to_replace() -> None:
    with pytest.raises(RemedyNotApplicable, match="already uses no saturating activations"):
        remedies.check(mlp(nn.ReLU), "relu")
    with pytest.raises(RemedyNotApplicable, match="output Sigmoid is kept"):
        remedies.use_relu(nn.Sequential(mlp(nn.ReLU6), nn.Sigmoid()))


def test_relu_trace_does_not_disturb_other_threads() -> None:
    """fx patches nn.Module.__call__ process-wide while tracing; a training thread must run."""
    tracing, other_done = threading.Event(), threading.Event()

    class Gate(Functional):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tracing.set()
            other_done.wait(5)
            return super().forward(x)

    errors: list[BaseException] = []
    other, x = mlp(), torch.randn(5, 6)

    def train_step() -> None:
        tracing.wait(5)
        try:
            other(x).sum().backward()
        except BaseException as error:  # reported in the main thread below
            errors.append(error)
        other_done.set()

    worker = threading.Thread(target=train_step)
    worker.start()
    remedied = remedies.use_relu(Gate())
    worker.join(5)
    assert errors == [] and other[0].weight.grad is not None
    assert isinstance(remedied, fx.GraphModule)


# -- he_init ------------------------------------------------------------------------------------


def test_he_init_std_bias_and_seed() -> None:
    model = nn.Sequential(
        nn.Linear(512, 512), nn.Sigmoid(), nn.Conv2d(64, 16, 3), nn.Linear(512, 2)
    )
    rng_before = torch.random.get_rng_state()
    first = remedies.he_init(model, seed=1)
    assert torch.equal(torch.random.get_rng_state(), rng_before)
    for layer, fan_in in ((first[0], 512), (first[2], 64 * 9)):
        expected = (2 / fan_in) ** 0.5
        assert abs(layer.weight.std().item() - expected) < 0.1 * expected
        assert torch.count_nonzero(layer.bias) == 0
    second = remedies.he_init(model, seed=1)
    other = remedies.he_init(model, seed=2)
    assert torch.equal(first[0].weight, second[0].weight)
    assert torch.equal(first[3].weight, second[3].weight)  # the output layer too
    assert not torch.equal(first[0].weight, other[0].weight)
    assert not torch.equal(first[0].weight, model[0].weight)


def test_he_init_needs_a_layer() -> None:
    with pytest.raises(RemedyNotApplicable, match="no Linear or Conv"):
        remedies.he_init(nn.Sequential(nn.Tanh()))


# -- add_batchnorm ------------------------------------------------------------------------------


def test_batchnorm_after_linear_before_activation_not_after_output() -> None:
    model, x = build("mlp")
    remedied = remedies.add_batchnorm(model)
    order = call_order(remedied, x)
    assert order == ["0.0", "0.1", "1", "2.0", "2.1", "3", "4.0", "4.1", "5", "6"]
    assert all(isinstance(remedied[i][1], remedies.FeatureBatchNorm1d) for i in (0, 2, 4))
    assert isinstance(remedied[6], nn.Linear)
    for i in (0, 2, 4, 6):  # the original weights, not re-initialised
        layer = remedied[i][0] if i < 6 else remedied[i]
        assert torch.equal(layer.weight, model[i].weight)


def test_batchnorm_nested_tree() -> None:
    model, x = build("nested")
    remedied = remedies.add_batchnorm(model)
    assert call_order(remedied, x) == [
        "stem.0.0", "stem.0.1", "stem.1",
        "blocks.0.fc.0", "blocks.0.fc.1", "blocks.0.act",
        "blocks.1.fc.0", "blocks.1.fc.1", "blocks.1.act",
        "head",
    ]  # fmt: skip
    summary = remedies.check(model, "batchnorm").summary
    assert summary == "BatchNorm1d after 3 Linear layers (not the output layer)"


def test_batchnorm_cnn_uses_batchnorm2d() -> None:
    model, x = build("cnn")
    remedied = remedies.add_batchnorm(model)
    assert [type(remedied[i][1]) for i in (0, 2)] == [nn.BatchNorm2d, nn.BatchNorm2d]
    assert isinstance(remedied[5], nn.Linear)
    assert call_order(remedied, x)[:3] == ["0.0", "0.1", "1"]
    expected = F.batch_norm(model[0](x), None, None, training=True)  # per-channel statistics
    torch.testing.assert_close(remedied[0](x), expected)


def test_batchnorm_skips_attention_and_keeps_forward_working() -> None:
    model, x = build("transformer")
    change = remedies.check(model, "batchnorm")
    assert change.summary.startswith("BatchNorm1d after 1 Linear layer (not the output layer)")
    assert "6 Linear layers inside TransformerEncoder" in change.summary
    remedied = remedies.add_batchnorm(model)
    assert isinstance(remedied.embed[1], remedies.FeatureBatchNorm1d)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in remedied.modules()) == 1
    assert remedied(x).shape == (5, 4, 3)
    remedied.eval()
    with torch.no_grad():  # the fused fast path of TransformerEncoderLayer runs here
        assert remedied(x).shape == (5, 4, 3)


def test_feature_batchnorm_matches_batchnorm1d_on_sequences() -> None:
    norm, oracle = remedies.FeatureBatchNorm1d(8), nn.BatchNorm1d(8)
    x = torch.randn(5, 4, 8) * 3 + 1
    torch.testing.assert_close(norm(x), oracle(x.transpose(1, 2)).transpose(1, 2))
    torch.testing.assert_close(norm.running_mean, oracle.running_mean)
    clone = pickle.loads(pickle.dumps(norm))
    torch.testing.assert_close(copy.deepcopy(clone).eval()(x), norm.eval()(x))


def test_batchnorm_not_applicable() -> None:
    with pytest.raises(RemedyNotApplicable, match="already has BatchNorm"):
        remedies.add_batchnorm(nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Linear(8, 3)))
    with pytest.raises(RemedyNotApplicable, match="no hidden Linear or Conv"):
        remedies.add_batchnorm(nn.Sequential(nn.Linear(6, 3), nn.Sigmoid()))
    with pytest.raises(RemedyNotApplicable, match="already has BatchNorm"):
        remedies.add_batchnorm(remedies.add_batchnorm(mlp()))


# -- check --------------------------------------------------------------------------------------


def test_check_summaries_count_right() -> None:
    model = mlp(depth=10)
    assert remedies.check(model, "relu").summary == "9 Sigmoid -> ReLU"
    assert remedies.check(model, "he_init").summary == (
        "He (Kaiming-normal) init on 10 Linear layers, biases zeroed"
    )
    assert remedies.check(model, "batchnorm").summary == (
        "BatchNorm1d after 9 Linear layers (not the output layer)"
    )
    assert remedies.check(cnn(), "he_init").summary == (
        "He (Kaiming-normal) init on 2 Conv2d, 1 Linear layers, biases zeroed"
    )
    assert remedies.check(cnn(), "batchnorm").summary.startswith("BatchNorm2d after 2 Conv2d")


@pytest.mark.parametrize("name", remedies.REMEDY_NAMES)
def test_check_code_does_what_the_remedy_does(name: str) -> None:
    model, x = build("nested")
    pasted = copy.deepcopy(model)
    exec(remedies.check(model, name).code, {"model": pasted})
    remedied = APPLY[name](model)
    assert pasted.state_dict().keys() == remedied.state_dict().keys()
    assert all(torch.equal(pasted.state_dict()[k], v) for k, v in remedied.state_dict().items())
    torch.testing.assert_close(pasted(x), remedied(x), rtol=0, atol=0)


def test_check_unknown_name() -> None:
    with pytest.raises(ValueError, match="choose from relu, leaky_relu, gelu, he_init"):
        remedies.check(mlp(), "dropout")


# -- apply_remedies -----------------------------------------------------------------------------


def test_apply_remedies_canonical_order_and_combination() -> None:
    model, x = build("mlp")
    combined = remedies.apply_remedies(model, ["he_init", "batchnorm", "relu", "relu"], seed=3)
    by_hand = remedies.he_init(remedies.add_batchnorm(remedies.use_relu(model)), seed=3)
    assert repr(combined) == repr(by_hand)
    assert all(torch.equal(by_hand.state_dict()[k], v) for k, v in combined.state_dict().items())
    torch.testing.assert_close(combined(x), by_hand(x), rtol=0, atol=0)
    assert isinstance(combined[0][1], remedies.FeatureBatchNorm1d)
    assert isinstance(combined[1], nn.ReLU)


def test_apply_remedies_empty_and_unknown() -> None:
    model, _ = build("mlp")
    before = snapshot(model)
    untouched = remedies.apply_remedies(model, [])
    assert untouched is not model
    assert_same(before, snapshot(untouched))
    assert_same(before, snapshot(model))
    assert isinstance(remedies.apply_remedies(model, "relu")[1], nn.ReLU)
    with pytest.raises(ValueError, match="choose from relu, leaky_relu"):
        remedies.apply_remedies(model, ["relu", "swish"])


def test_inplace_relu_model_gets_every_remedy() -> None:
    model, x = build("inplace_relu")
    remedied = remedies.apply_remedies(model, ["relu", "he_init", "batchnorm"])
    assert call_order(remedied, x) == ["0.0", "0.1", "1", "2.0", "2.1", "3", "4"]
    remedied(x).sum().backward()
    assert all(p.grad is not None for p in remedied.parameters())
