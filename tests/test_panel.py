"""GradPanel without a browser: ipywidgets' dummy comm, ``button.click()``, torch as the oracle."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gradwidget as gw
from gradwidget.view.diagnosis_box import HEALTHY

torch.set_num_threads(1)
STEPS = 40


@pytest.fixture(scope="module")
def data() -> gw.datasets.Dataset:
    return gw.datasets.spirals(n=256)


def mlp(depth: int = 4, activation: str = "sigmoid") -> nn.Sequential:
    torch.manual_seed(0)
    return gw.models.deep_mlp(depth, 16, activation, in_features=2, out_features=3)


def all_hooks(model: nn.Module) -> int:
    names = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
    return sum(len(getattr(m, n)) for m in model.modules() for n in names)


def gradwidget_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("gradwidget")]


def own_loop(panel: gw.GradPanel, model: nn.Module, data, steps: int) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for i in range(steps):
        x, y = data.x_train[i % 6 * 32 :][:32], data.y_train[i % 6 * 32 :][:32]
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        panel.capture(loss)
        opt.step()


# -- managed training --------------------------------------------------------------------------


def test_train_draws_the_run_history_into_the_charts(panels, data) -> None:
    panel = panels(mlp(), data, steps=STEPS, batch_size=32)
    run = panel.train()
    assert panel.wait(timeout=30)
    assert run.state is gw.RunState.FINISHED and run.step == STEPS
    history = panel.runs[0].history
    dash = panel.live.dashboard
    assert dash.layers == history.layers == run.recorder.layers
    np.testing.assert_array_equal(dash.flow.profile.y, history.grad_norm[-1])
    assert dash.grad.columns.labels == history.layers  # the lines; their tooltips in words
    assert dash.grad.lines.y.shape[0] == len(history.layers)
    assert dash.grad.lines.x[-1] == history.steps[-1]
    assert dash.loss.lines["loss"].y.max() == history.series("loss").hi.max()
    np.testing.assert_array_equal(
        dash.activity.bars.y[1], np.nan_to_num(history.saturated_frac[-1])
    )
    assert dash.heat.map.color.shape == (len(history.layers), len(history.steps))
    assert "Finished" in panel.status.text and panel.updates_sent >= 1
    assert panel.status.progress.layout.visibility == "hidden"
    findings = gw.diagnose(history)
    assert (HEALTHY in panel.live.diagnosis.value) == (not findings)
    assert all(f.title in panel.live.diagnosis.value for f in findings)


def test_diagnosed_remedies_are_highlighted(panels, data) -> None:
    panel = panels(mlp(depth=10), data, steps=300, batch_size=32)  # enough sampled steps
    panel.train()
    panel.wait(timeout=30)
    findings = gw.diagnose(panel.runs[0].history)
    suggested = {r for f in findings for r in f.remedies}
    assert suggested, "a 10-layer sigmoid MLP should be diagnosed"
    styles = {n: b.button_style for n, b in panel.fixes.buttons.items()}
    assert {n for n, s in styles.items() if s == "warning"} == suggested
    flagged = {layer for f in findings for layer in f.layers}
    assert set(panel.live.dashboard.flow.flagged.x) == flagged


def test_retrain_starts_from_the_same_weights_and_data_order(panels, data) -> None:
    model = mlp()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    starts: list[dict[str, torch.Tensor]] = []
    batches: list[list[torch.Tensor]] = []

    def optimizer(params):
        params = list(params)
        starts.append([p.detach().clone() for p in params])
        batches.append([])
        return torch.optim.SGD(params, lr=0.1)

    def loss_fn(output, y):
        batches[-1].append(y.clone())
        return F.cross_entropy(output, y)

    panel = panels(model, data, steps=STEPS, batch_size=32, optimizer=optimizer, loss_fn=loss_fn)
    panel.train()
    panel.wait(timeout=30)
    panel.fixes.buttons["relu"].click()
    assert panel.fixes.selected == ("relu",) and panel.fixes.buttons["relu"].icon == "check"
    panel.fixes.retrain_button.click()
    assert panel.wait(timeout=30)
    assert [r.name for r in panel.runs] == ["baseline", "ReLU"]
    assert panel.runs[1].remedies == ("relu",)
    assert not any(isinstance(m, nn.Sigmoid) for m in panel.runs[1].model.modules())
    assert len(starts) == 2
    for baseline, remedied, original in zip(*starts, before.values(), strict=True):
        assert torch.equal(baseline, original) and torch.equal(remedied, original)
    assert len(batches[0]) == len(batches[1]) == STEPS
    assert all(torch.equal(a, b) for a, b in zip(*batches, strict=True))
    for key, value in model.state_dict().items():  # the user's model was never trained
        assert torch.equal(value, before[key])
    table = panel.comparison()
    assert list(table["run"]) == ["baseline", "ReLU"]
    for row, record in zip(table.itertuples(), panel.runs, strict=True):
        assert row.final_loss == pytest.approx(record.run.loss)  # the very last step's loss
    assert set(panel.compare.cells) == {"baseline", "ReLU"}
    scales = {id(c.chart.y_scale) for c in panel.compare.cells.values()}
    assert len(scales) == 1
    assert "</span>ReLU</td>" in panel.compare.table.value


def test_each_fix_toggles_and_all_three_combine_from_the_initial_copy(panels, data) -> None:
    model = mlp()
    starts: list[list[torch.Tensor]] = []

    def optimizer(params):
        params = list(params)
        starts.append([p.detach().clone() for p in params])
        return torch.optim.SGD(params, lr=0.1)

    panel = panels(model, data, steps=10, batch_size=32, optimizer=optimizer, seed=3)
    fixes = panel.fixes
    for name in ("batchnorm", "relu", "he_init"):
        fixes.buttons[name].click()
    assert fixes.selected == ("relu", "he_init", "batchnorm") and not fixes.retrain_button.disabled
    fixes.buttons["relu"].click()
    assert fixes.selected == ("he_init", "batchnorm") and fixes.buttons["relu"].icon == ""
    fixes.buttons["relu"].click()
    fixes.retrain_button.click()
    assert panel.wait(timeout=30)
    record = panel.runs[0]
    assert record.name == "ReLU + He init + BatchNorm" and record.remedies == fixes.selected
    assert record.run.state is gw.RunState.FINISHED
    expected = gw.apply_remedies(model, ["relu", "he_init", "batchnorm"], seed=3)
    wanted = [p for p in expected.parameters() if p.requires_grad]
    assert len(starts[0]) == len(wanted)
    assert all(torch.equal(a, b) for a, b in zip(starts[0], wanted, strict=True))


def test_one_run_at_a_time_and_sensible_no_ops(panels, data) -> None:
    panel = panels(mlp(), data, steps=100_000, batch_size=32)
    panel.stop_button.click()
    assert panel.status.text == "Nothing is running."
    run = panel.train()
    assert panel.train() is None and "still running" in panel.status.text
    assert panel.retrain(["he_init"]) is None and "still running" in panel.status.text
    assert panel.retrain([]) is None
    assert panel.fixes.retrain_button.disabled and panel.train_button.disabled
    started = time.monotonic()
    panel.stop_button.click()
    assert panel.wait(timeout=5) and time.monotonic() - started < 1.0
    assert run.state is gw.RunState.STOPPED and len(panel.runs) == 1
    assert not panel.train_button.disabled


def test_a_failing_model_shows_the_error_and_the_panel_keeps_working(panels, data) -> None:
    class Flaky(nn.Module):
        fail = True  # a class attribute: the panel's copies see the change

        def __init__(self) -> None:
            super().__init__()
            self.body = mlp()
            self.calls = 0

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            if Flaky.fail and self.calls > 5:
                raise RuntimeError("boom in forward")
            return self.body(x)

    panel = panels(Flaky(), data, steps=STEPS, batch_size=32)
    run = panel.train()
    panel.wait(timeout=30)
    assert run.state is gw.RunState.FAILED
    assert "boom in forward" in panel.status.text
    assert panel.status.errors.layout.display == "block"
    assert "boom in forward" in "".join(o["text"] for o in panel.status.errors.outputs)
    assert len(panel.runs[0].history) == 5  # the partial history is kept and shown
    assert panel.live.dashboard is not None and panel.live.dashboard.grad.lines.x[-1] == 4
    Flaky.fail = False
    assert panel.train() is not None and panel.wait(timeout=30)
    assert panel.runs[1].run.state is gw.RunState.FINISHED


def test_remove_run_with_its_button_and_export(panels, data, tmp_path) -> None:
    panel = panels(mlp(), data, steps=STEPS, batch_size=32)
    panel.train()
    panel.wait(timeout=30)
    panel.retrain(["he_init"])
    panel.wait(timeout=30)
    written = panel.export(tmp_path / "out")
    assert sorted(p.name for p in written) == ["He_init.json", "baseline.json", "comparison.csv"]
    loaded = gw.History.from_json(tmp_path / "out" / "baseline.json")
    np.testing.assert_array_equal(loaded.grad_norm, panel.runs[0].history.grad_norm)
    csvs = panel.export(tmp_path / "run.csv")
    assert {p.name for p in csvs} == {"run-baseline.csv", "run-He_init.csv", "run-comparison.csv"}
    panel.compare.cells["He init"].remove_button.click()
    assert [r.name for r in panel.runs] == ["baseline"]
    assert list(panel.compare.cells) == ["baseline"]
    assert list(panel.comparison()["run"]) == ["baseline"]


def test_remedy_that_cannot_apply_is_disabled_with_the_reason(panels, data) -> None:
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Linear(2, 3))
    panel = panels(linear, data, steps=STEPS)
    with pytest.raises(gw.RemedyNotApplicable) as why:
        gw.remedies.check(linear, "relu")
    button = panel.fixes.buttons["relu"]
    assert button.disabled and button.tooltip == str(why.value)
    assert not panel.fixes.buttons["he_init"].disabled


# -- own loop ----------------------------------------------------------------------------------


def test_own_loop_refresh_is_throttled_but_live(panels, data) -> None:
    model = mlp(depth=2)
    panel = panels(model, refresh_hz=20.0)
    started = time.monotonic()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data.x_train[:8], data.y_train[:8]
    captures = 0
    # The first redraw comes half a second in, then at least one a second.
    while time.monotonic() - started < 3.0:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        panel.capture(loss)
        opt.step()
        captures += 1
    elapsed = time.monotonic() - started
    sent_while_training = panel.updates_sent
    assert captures > 200
    assert 3 <= sent_while_training <= 20.0 * elapsed + 2
    panel.wait()
    assert panel.live.dashboard.grad.lines.x[-1] == panel.recorder.history.steps[-1]
    assert f"step {captures}" in panel.status.text


def test_a_watching_panel_starts_redrawing_at_its_first_capture(panels, data) -> None:
    model = mlp(depth=2)
    panel = panels(model)
    # Its charts are laid out already (not in the first redraw, inside the training loop),
    # and no refresher runs: the first redraw is half a second after the first capture.
    assert panel.live.dashboard.layers == tuple(panel.recorder.layers)
    assert panel._refresher._thread is None
    own_loop(panel, model, data, steps=1)
    assert panel._refresher._thread is not None
    own_loop(panel, model, data, steps=2)  # a chart needs two steps
    panel.wait()
    assert panel.live.dashboard.grad.lines.x.tolist() == panel.recorder.history.steps.tolist()


def test_own_loop_mode_buttons_and_capture_rules(panels, data) -> None:
    model = mlp()
    panel = panels(model)
    assert panel.train_button.disabled and panel.fixes.retrain_button.disabled
    assert "capture" in panel.train_button.tooltip
    assert panel.train() is None and "capture" in panel.status.text
    own_loop(panel, model, data, steps=12)
    panel.wait()
    np.testing.assert_array_equal(
        panel.live.dashboard.flow.profile.y, panel.recorder.history.grad_norm[-1]
    )
    panel.fixes.buttons["relu"].click()
    assert "panel.remedied_model(['relu'])" in panel.status.text
    fixed = panel.remedied_model(["relu"])
    assert any(isinstance(m, nn.ReLU) for m in fixed.modules())
    assert any(isinstance(m, nn.Sigmoid) for m in model.modules())
    managed = panels(mlp(), data)
    with pytest.raises(gw.GradWidgetError, match="own training loop"):
        managed.capture(torch.tensor(1.0))


def test_same_model_in_two_own_loop_panels_is_refused(panels, data) -> None:
    model = mlp()
    first = panels(model)
    with pytest.raises(gw.GradWidgetError, match="already watched"):
        gw.GradPanel(model)
    managed = panels(model, data, steps=5)  # trains copies: no hooks on model, allowed
    first.close()
    second = panels(model)
    own_loop(second, model, data, steps=3)
    assert second.recorder.step == 3 and managed.recorder is None


def test_watch_displays_an_own_loop_panel(panels, monkeypatch) -> None:
    shown = []
    monkeypatch.setattr("IPython.display.display", shown.append)
    panel = gw.watch(mlp(), refresh_hz=5.0)
    try:
        assert shown == [panel] and panel.recorder is not None
    finally:
        panel.close()


# -- teardown ----------------------------------------------------------------------------------


def test_close_leaves_no_hooks_threads_or_open_widgets(data) -> None:
    before = set(gradwidget_threads())  # other tests' leftovers are not this panel's
    model = mlp()
    watched = gw.GradPanel(model)
    own_loop(watched, model, data, steps=5)
    assert all_hooks(model) > 0 or watched.recorder.step == 5
    managed = gw.GradPanel(mlp(), data, steps=100_000, batch_size=32)
    managed.train()
    time.sleep(0.2)
    assert set(gradwidget_threads()) - before
    for panel in (watched, managed):
        panel.close()
        panel.close()  # idempotent
    assert all_hooks(model) == 0
    assert all(all_hooks(r.model) == 0 for r in managed.runs)
    assert managed.runs[0].run.state is gw.RunState.STOPPED
    assert set(gradwidget_threads()) - before == set()
    for panel in (watched, managed):
        assert panel.comm is None and panel.fixes.comm is None
        assert panel.live.dashboard is None or panel.live.dashboard.grad.lines.comm is None
    assert managed.train() is None and managed.status.text == "This panel is closed."
    json.dumps(managed.comparison().to_dict())  # results stay readable after close


def test_the_refresher_thread_creates_no_widget(panels, widgets_made_off_thread) -> None:
    """Widgets made off the kernel's thread break their views in the browser (bqplot)."""
    data = gw.datasets.spirals(n=200, classes=3, seed=0)
    model = gw.models.deep_mlp(depth=3, width=8, in_features=2, out_features=3)
    panel = panels(model, data, steps=100_000)
    for start in (panel.train, lambda: panel.retrain(["relu", "he_init"])):
        drawn = panel.updates_sent
        start()
        deadline = time.monotonic() + 20
        while panel.updates_sent < drawn + 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the refresher thread draws while the run goes on
        panel.stop()
        panel.wait()
        assert panel.updates_sent >= drawn + 2
    assert len(panel.compare.grid.children) == 2
    assert widgets_made_off_thread == []


# -- the whole toolbox through retrain ---------------------------------------------------------


@pytest.fixture(scope="module")
def digits() -> gw.datasets.Dataset:
    return gw.datasets.digits()


def test_residual_lifts_a_20_layer_sigmoid_mlp_by_40_points(panels, digits) -> None:
    torch.manual_seed(0)
    panel = panels(gw.models.deep_mlp(20, 64, "sigmoid"), digits, steps=300, lr=0.1)
    panel.train()
    panel.wait(timeout=120)
    run = panel.retrain(["residual"])
    assert panel.wait(timeout=120) and run.state is gw.RunState.FINISHED
    baseline, residual = (r.run.test_accuracy for r in panel.runs)
    assert residual - baseline >= 0.40, (baseline, residual)
    assert panel.runs[1].name == "Residual" and panel.runs[1].remedies == ("residual",)
    assert sum(isinstance(m, gw.remedies.Residual) for m in panel.runs[1].model.modules()) == 19
    table = panel.comparison()
    assert list(table["accuracy"]) == pytest.approx([baseline, residual])


def test_clip_grad_and_lower_lr_end_a_diverging_run_finite(panels, digits) -> None:
    torch.manual_seed(0)
    model = gw.models.deep_mlp(4, 64, "relu")
    panel = panels(model, digits, steps=200, lr=50.0)
    assert panel.train().join(60) is gw.RunState.DIVERGED
    panel.wait(timeout=5)
    run = panel.retrain(["lower_lr", "clip_grad"])
    assert panel.wait(timeout=60) and run.state is gw.RunState.FINISHED
    assert np.isfinite(run.loss) and run.step == 200
    assert (run.config.lr, run.config.clip_grad) == (5.0, 1.0)
    assert panel.config.lr == 50.0 and panel.config.clip_grad is None  # the panel's own stay
    record = panel.runs[1]
    assert record.name == "Clip grad + Lower LR" and record.remedies == ("clip_grad", "lower_lr")
    table = panel.comparison()
    assert list(table["training"]) == ["", "lr 5, clip 1"]
    assert "lr 5, clip 1" in panel.compare.table.value


def test_fix_bar_groups_rivals_reasons_and_stand_ins(panels, data) -> None:
    torch.manual_seed(0)
    model = gw.models.deep_mlp(3, 8, "sigmoid", in_features=2, out_features=3)
    panel = panels(model, data, steps=5, batch_size=1)
    fixes = panel.fixes
    for group in gw.remedies.Group:
        box = next(b for b in fixes.children[1].children[:-1]
                   if f"gw-fix-group-{group.value}" in b._dom_classes)  # fmt: skip
        in_box = [b.description for b in box.children[1].children]
        assert in_box == [r.label for r in gw.remedies.REGISTRY if r.group is group]
    with pytest.raises(gw.RemedyNotApplicable) as why:
        gw.remedies.check(model, "batchnorm", panel.config)
    assert fixes.buttons["batchnorm"].disabled and fixes.buttons["batchnorm"].tooltip == str(
        why.value
    )
    assert not fixes.buttons["residual"].disabled  # the 8 -> 8 layer is a block
    fixes.suggest(["residual", "batchnorm"])
    assert fixes.buttons["layernorm"].button_style == "warning"  # BatchNorm refused: LayerNorm
    fixes.buttons["relu"].click()
    fixes.buttons["gelu"].click()
    fixes.buttons["clip_grad"].click()
    assert fixes.selected == ("gelu", "clip_grad")  # one activation at a time
    assert panel.retrain(["relu", "gelu"]) is None
    assert "both change the activation" in panel.status.text
    assert panel.retrain(["swish"]) is None and "Unknown remedy 'swish'" in panel.status.text
    assert panel.runs == []


def test_comparison_stays_legible_with_nine_runs() -> None:
    from gradwidget.session.summary import RunSummary
    from gradwidget.view.compare import CompareView, run_style

    view = CompareView(lambda _: None)
    history = gw.History(("a", "b"))
    for step in range(20):
        history.append("grad_norm", step, [1e-3, 1.0])
        history.append("loss", step, 2.0 / (1 + step))
    names = [f"run {i}" for i in range(9)]
    for name in names:
        view.add_run(name)
    rows = [RunSummary(n, "", 0.1, 0.9, 1e-3, None, 1.0) for n in names]
    view.update(dict.fromkeys(names, history), rows)
    styles = [(line.colors[0], line.line_style) for line in view.loss_lines.values()]
    assert len(set(styles)) == 9 and len({run_style(i) for i in range(40)}) == 40
    assert not any(line.display_legend for line in view.loss_lines.values())  # it would cover them
    for name, (colour, _) in view.styles.items():  # the table is the legend
        assert f'<span class="gw-chip" style="background:{colour}"></span>{name}</td>' in (
            view.table.value
        )
    assert all(cell.layout.width == "24%" for cell in view.cells.values())  # four to a row
    view.update({n: history for n in names[:3]}, rows[:3])
    assert all(cell.layout.width == "32%" for cell in view.cells.values())


def test_own_loop_fix_bar_says_where_each_kind_of_fix_goes(panels) -> None:
    model = mlp(depth=4)
    panel = panels(model)
    panel.fixes.buttons["residual"].click()
    panel.fixes.buttons["clip_grad"].click()
    text = panel.status.text
    assert "panel.remedied_model(['residual'])" in text and "Put clip_grad in your loop" in text
    assert "gw.remedies.check(model, 'clip_grad').code" in text
    assert "clip_grad_norm_" in gw.remedies.check(model, "clip_grad").code
    assert isinstance(panel.remedied_model(["residual"])[2], gw.remedies.Residual)
    with pytest.raises(ValueError, match="change the training settings, not the model"):
        panel.remedied_model(["clip_grad"])


# -- layout ------------------------------------------------------------------------------------


def test_status_diagnosis_and_fixes_come_before_the_charts_and_compare_waits(panels, data):
    import ipywidgets as w

    panel = panels(mlp(), data, steps=STEPS, batch_size=32)
    toolbar, live = panel.children  # no comparison area while there is nothing to compare
    assert panel.status in toolbar.children
    assert list(live.children) == [panel.live.diagnosis, panel.fixes, panel.live.charts]
    panel.train()
    assert panel.wait(timeout=30)
    assert panel.compare not in panel.children  # one run: nothing to compare yet
    assert isinstance(panel.live.dashboard, w.GridBox)
    panel.retrain(["relu"])
    assert panel.wait(timeout=30)
    assert panel.children[-1] is panel.compare


def test_redraws_never_wait_on_the_recorder_and_wait_lands_every_step(
    panels, data, monkeypatch
) -> None:
    model = mlp(depth=2)
    panel = panels(model, refresh_hz=0.01)  # drawn by the test only
    recorder, flushes = panel.recorder, []
    land = recorder.flush
    monkeypatch.setattr(recorder, "flush", lambda: (flushes.append(1), land())[1])
    own_loop(panel, model, data, steps=13)
    panel._tick()  # what the refresher does, ten times a second
    assert flushes == []  # it holds capture()'s lock and waits on the device: never there
    panel.wait()
    assert flushes == [1]
    assert panel.live.dashboard.loss.lines["loss"].x[-1] == 12  # the last step, landed
