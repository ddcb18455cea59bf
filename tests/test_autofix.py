"""Find a fix: broken nets of each kind are repaired, healthy ones left alone, trials are
reproducible, and Stop leaves every run ended and the host usable.

Short runs (300 steps, at most 4 trials of 80 steps) keep the file to about a minute; the
full zoo is the benchmark's (``python -m benchmarks.autofix``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import gradwidget as gw
from benchmarks.autofix_zoo import data_for, mlp
from gradwidget.diagnose.findings import KINDS, Finding, Severity
from gradwidget.remedies import REMEDIES
from gradwidget.session import Session
from gradwidget.session._candidates import candidates
from gradwidget.session._trials import Standing
from gradwidget.session.autofix import Autofix

SHORT = {"steps": 300, "trial_steps": 80, "max_trials": 4}


def _digits_mlp(depth: int, act: str, **planted: float) -> torch.nn.Module:
    torch.manual_seed(0)
    return mlp("digits", depth, 64, act, **planted)()


def _kinds(run: gw.Run) -> set[str]:
    return {f.kind for f in gw.diagnose(run.history)}


def test_vanishing_sigmoid_mlp_is_repaired_and_the_message_gives_the_numbers() -> None:
    result = gw.autofix(_digits_mlp(8, "sigmoid"), data_for("digits"), **SHORT)
    assert "vanishing" in {f.kind for f in result.findings}
    assert result.winner and result.run is not None and result.run.state is gw.RunState.FINISHED
    assert "vanishing" not in _kinds(result.run)
    before, after = result.baseline.test_accuracy, result.run.test_accuracy
    assert before < 0.3 and after > 0.85
    cleared = result.message.split(" gone;")[0]  # "ReLU: vanishing gradients and ... gone;"
    assert "vanishing gradients" in cleared
    assert f"{100 * after:.0f} %" in result.message and "->" in result.message


def test_too_high_learning_rate_is_repaired_with_a_training_fix() -> None:
    result = gw.autofix(_digits_mlp(4, "relu"), data_for("digits"), lr=5.0, **SHORT)
    assert result.baseline.state is gw.RunState.DIVERGED
    assert "non_finite" in {f.kind for f in result.findings}
    assert {"clip_grad", "lower_lr"} & set(result.winner)
    assert result.run.state is gw.RunState.FINISHED and result.run.test_accuracy > 0.85
    assert result.message.endswith(f"test accuracy diverged -> {result.run.test_accuracy:.0%}"
                                   .replace("%", " %"))  # fmt: skip


def test_dead_relu_units_are_repaired() -> None:
    model = _digits_mlp(5, "relu", bias=-1.5)
    result = gw.autofix(model, data_for("digits"), **SHORT)
    assert "dead_units" in {f.kind for f in result.findings}
    assert result.winner and "dead_units" not in _kinds(result.run)
    assert result.run.test_accuracy > 0.85


def test_saturated_sigmoid_mlp_is_repaired() -> None:
    result = gw.autofix(_digits_mlp(3, "sigmoid", scale=30.0), data_for("digits"), **SHORT)
    assert "saturation" in {f.kind for f in result.findings}
    assert result.winner and "saturation" not in _kinds(result.run)
    assert result.run.test_accuracy > result.baseline.test_accuracy + 0.1


def test_oscillating_loss_is_repaired() -> None:
    torch.manual_seed(0)
    model = mlp("spirals", 3, 64, "relu")()
    result = gw.autofix(model, data_for("spirals"), lr=2.0, **SHORT)
    assert "oscillating" in {f.kind for f in result.findings}
    assert result.winner and "oscillating" not in _kinds(result.run)
    assert result.run.test_accuracy > result.baseline.test_accuracy + 0.2


def test_a_learning_rate_too_small_is_repaired() -> None:
    result = gw.autofix(_digits_mlp(3, "relu"), data_for("digits"), lr=1e-3, **SHORT)
    assert {"plateau", "slow_convergence"} & {f.kind for f in result.findings}
    assert {"adam", "raise_lr"} & set(result.winner)
    assert not {"plateau", "slow_convergence"} & _kinds(result.run)
    assert result.baseline.test_accuracy < 0.3 and result.run.test_accuracy > 0.9


def test_without_a_test_split_the_loss_judges() -> None:
    digits = data_for("digits")
    tensors = (digits.x_train, digits.y_train)  # no test split: no test accuracy
    result = gw.autofix(_digits_mlp(8, "sigmoid"), tensors, **SHORT)
    assert result.winner and result.run.test_accuracy is None
    assert all(t.accuracy is None for t in result.trial_list)
    before, after = result.baseline.loss, result.run.loss
    assert after < before / 2 and f"final loss {before:.3g} -> {after:.3g}" in result.message


def test_a_healthy_net_gets_no_winner_and_a_message_saying_so() -> None:
    result = gw.autofix(_digits_mlp(4, "relu"), data_for("digits"), **SHORT)
    assert result.findings == () and result.winner == () and result.run is None
    assert result.trial_list == () and result.message.startswith("No finding on the baseline")


def test_the_model_given_is_never_changed() -> None:
    model = _digits_mlp(4, "relu")
    before = [p.detach().clone() for p in model.parameters()]
    gw.autofix(model, data_for("digits"), lr=5.0, **SHORT)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert not model._forward_hooks and not model[0]._forward_hooks


def test_same_seed_gives_the_same_trials_and_winner() -> None:
    runs = [gw.autofix(_digits_mlp(8, "sigmoid"), data_for("digits"), **SHORT) for _ in range(2)]
    first, second = (r.trials for r in runs)
    assert runs[0].winner == runs[1].winner
    assert list(first["fixes"]) == list(second["fixes"])
    assert list(first["accuracy"]) == list(second["accuracy"])
    assert runs[0].run.test_accuracy == runs[1].run.test_accuracy


def test_trials_table_has_one_row_per_trial() -> None:
    result = gw.autofix(_digits_mlp(8, "sigmoid"), data_for("digits"), **SHORT)
    table = result.trials
    assert list(table.columns)[:6] == ["fixes", "score", "final_loss", "accuracy", "findings",
                                       "seconds"]  # fmt: skip
    assert len(table) == len(result.trial_list) <= SHORT["max_trials"]
    assert (table["steps"] <= SHORT["trial_steps"]).all()
    winner = " + ".join(gw.remedies.LABELS[n] for n in result.winner)
    assert (
        table.loc[table["helped"], "score"].max() == table.set_index("fixes").loc[winner, "score"]
    )


def test_stop_during_the_trials_ends_every_run_and_leaves_the_host_usable() -> None:
    host = Session(_digits_mlp(8, "sigmoid"), data_for("digits"), steps=300)
    search = Autofix(host, trial_steps=200, max_trials=8).start()
    deadline = time.monotonic() + 60
    while not search.progress.startswith("Trial 2") and time.monotonic() < deadline:
        time.sleep(0.01)
    result = search.stop()
    assert search.done and result is not None and result.stopped
    assert result.winner == () and result.run is None and result.message.startswith("Stopped")
    assert len(result.trial_list) <= 2
    assert all(r.run.state.ended for r in host.runs)
    again = host.launch(("relu",), steps=20, label="after", role="trial")
    assert again.join(30) is gw.RunState.FINISHED


def test_a_budget_too_small_for_the_baseline_stops_it_and_says_so() -> None:
    result = gw.autofix(_digits_mlp(8, "sigmoid"), data_for("digits"), budget_s=0.3, steps=5000)
    assert result.stopped and result.winner == () and result.run is None
    assert result.baseline.state is gw.RunState.STOPPED
    assert "out of time: budget_s=0.3" in result.message


def test_no_data_and_bad_data_raise_clear_errors() -> None:
    with pytest.raises(gw.GradWidgetError, match="needs data"):
        gw.autofix(_digits_mlp(3, "relu"), None)
    with pytest.raises(gw.GradWidgetError) as caught:
        gw.autofix(_digits_mlp(3, "relu"), (torch.randn(32, 5), torch.zeros(32).long()))
    assert "Traceback" not in str(caught.value)


def test_every_trial_starts_from_the_same_initial_weights_with_its_settings() -> None:
    model = _digits_mlp(3, "relu")
    host = Session(model, data_for("digits"), steps=5, lr=0.2)
    plain = host.launch((), steps=1, label="a", role="trial")
    plain.join(10)  # one run at a time
    lowered = host.launch(("lower_lr", "he_init"), steps=1, label="b", role="trial")
    lowered.join(10)
    assert plain.config.lr == 0.2 and lowered.config.lr == pytest.approx(0.02)
    assert plain.config.steps == lowered.config.steps == 1
    assert host.baseline() is None  # a trial is not a baseline
    # he_init re-draws the weights, the plain copy starts from the model's own
    fresh = host.launch((), steps=1, label="c", role="baseline")
    assert all(torch.equal(a, b) for a, b in zip(fresh.model.parameters(), model.parameters(),
                                                   strict=True))  # fmt: skip
    fresh.join(10)
    assert host.baseline() is fresh


def _finding(kind: str) -> Finding:
    _, severity, remedies = KINDS[kind]
    return Finding(kind, Severity(severity), (), {}, "", remedies)


def test_candidates_try_each_fix_alone_first_then_one_per_group_combinations() -> None:
    findings = (_finding("vanishing"),)
    sets = candidates(findings, _digits_mlp(8, "sigmoid"), gw.TrainConfig())
    suggested = KINDS["vanishing"][2]
    assert sets[: len(suggested)] == [(n,) for n in suggested]
    assert all(len({REMEDIES[n].group for n in s}) == len(s) for s in sets)  # all of one kind
    assert len(set(sets)) == len(sets) and max(map(len, sets)) == len(suggested)
    sizes = [len(s) for s in sets]
    assert sizes == sorted(sizes)


def test_nan_findings_also_try_the_exploding_fixes_such_as_he_init() -> None:
    sets = candidates((_finding("non_finite"),), _digits_mlp(4, "relu"), gw.TrainConfig())
    singles = [s[0] for s in sets if len(s) == 1]
    assert singles[: len(KINDS["non_finite"][2])] == list(KINDS["non_finite"][2])
    assert "he_init" in singles


def test_training_fixes_combine_only_where_each_changes_something() -> None:
    findings = (_finding("non_finite"), _finding("oscillating"), _finding("slow_convergence"))
    sets = candidates(findings, _digits_mlp(4, "relu"), gw.TrainConfig())
    as_sets = [set(s) for s in sets]
    assert {"clip_grad", "lower_lr"} in as_sets  # clipped and smaller steps: both matter
    assert {"raise_lr", "adam"} in as_sets  # Adam at ten times its usual rate
    assert not any({"lower_lr", "raise_lr"} <= set(s) for s in sets)  # they cancel
    assert not any({"relu", "leaky_relu"} <= set(s) for s in sets)  # one activation


def test_scores_reward_accuracy_and_cleared_findings_and_veto_new_warnings() -> None:
    vanishing, dead = (_finding("vanishing"),), (_finding("dead_units"),)
    base = Standing(2.3, 0.10, vanishing)
    cured = Standing(0.2, 0.95, ())
    assert cured.score(base, 1) == (pytest.approx(0.85 + 0.5 - 0.01), True)
    assert cured.score(base, 1)[0] > cured.score(base, 2)[0]  # fewer fixes win a tie
    assert not Standing(2.3, 0.11, vanishing).score(base, 1)[1]  # nothing cleared or gained
    assert not Standing(np.inf, 0.0, ()).score(base, 1)[1]  # diverged
    assert not Standing(2.0, 0.15, dead).score(base, 1)[1]  # a new warning, small gain
    assert Standing(0.5, 0.80, dead).score(base, 1)[1]  # forgiven: 70 points better
    diverged = Standing(np.inf, 0.0, (_finding("non_finite"),))
    assert not Standing(1.1, 0.33, dead).score(diverged, 1)[1]  # finite but dead: no


def test_the_benchmark_writes_its_comparison_with_autotrainer(tmp_path: Path) -> None:
    from benchmarks import autofix as bench

    bench.main(["--only", "cancer ReLU MLP x4 lr 20", "--out", str(tmp_path)])
    results = json.loads((tmp_path / "autofix-partial.json").read_text())
    (row,) = results["rows"]
    assert row["kind"] == "exploding" and "non_finite" in row["found"] and row["detected"]
    assert row["repaired"] == (row["accuracy_after"] >= bench.BARS["breast_cancer"])
    assert results["totals"]["detection"] == "1/1 (100.0 %)"
    text = (tmp_path / "autofix-partial.md").read_text()
    assert "| repair |" in text and "98.42 %" in text and "cancer ReLU MLP x4 lr 20" in text


def test_a_search_stopped_before_it_starts_is_done_and_cannot_start() -> None:
    host = Session(_digits_mlp(3, "relu"), data_for("digits"), steps=50)
    search = Autofix(host)
    assert search.stop() is None and search.done and host.runs == []
    with pytest.raises(RuntimeError, match="make a new one"):
        search.start()
