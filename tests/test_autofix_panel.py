"""Find a fix from the panel: the button starts the session's search, every run it makes
joins the comparison, the verdict lands in the status line, Stop works at any moment."""

from __future__ import annotations

import time

import pytest
import torch

import gradwidget as gw


def _vanishing() -> torch.nn.Module:
    torch.manual_seed(0)
    return gw.models.deep_mlp(depth=8, width=32, activation="sigmoid")


@pytest.fixture(scope="module")
def digits() -> gw.datasets.Dataset:
    return gw.datasets.digits()


def test_find_a_fix_repairs_the_net_and_shows_every_trial(
    panels, digits, widgets_made_off_thread
) -> None:
    panel = panels(_vanishing(), digits, steps=300)
    panel.fixes.autofix_button.click()
    search = panel.session.search
    assert search is not None and panel.train_button.disabled
    result = search.wait(180)
    panel.wait()
    assert result is not None and result.winner, result.message
    assert not {f.kind for f in gw.diagnose(result.run.history)} & {"vanishing"}
    names = [r.name for r in panel.runs]
    assert names[0] == "baseline" and any(n.endswith("(trial)") for n in names)
    assert set(panel.compare.cells) == set(names)  # every trial stays in the comparison
    assert panel.status.text == result.message and "gone" in result.message
    assert not panel.train_button.disabled and not panel.fixes.autofix_button.disabled
    assert (
        widgets_made_off_thread == []
    )  # the comparison's widgets were made on the kernel's thread
    again = gw.Session(_vanishing(), digits, steps=300).autofix().wait(180)
    assert again is not None and again.winner == result.winner  # same seed, same winner


def test_stop_during_the_search_leaves_a_usable_panel(panels, digits) -> None:
    panel = panels(_vanishing(), digits, steps=2000)
    search = panel.autofix(trial_steps=1500)
    deadline = time.monotonic() + 60
    while not search.progress.startswith("Trial") and time.monotonic() < deadline:
        time.sleep(0.02)
    panel.stop()
    assert search.wait(30) is not None and search.done
    assert panel.wait(30)
    assert all(r.run.state.ended for r in panel.runs)
    assert panel.retrain(["relu"]) is not None  # the panel still trains
    panel.stop()
    panel.wait(30)


def test_a_second_search_or_run_is_refused_in_words(panels, digits) -> None:
    panel = panels(_vanishing(), digits, steps=5000)
    first = panel.autofix()
    assert panel.autofix() is None and "press Stop first" in panel.status.text
    assert panel.train() is None and "still searching" in panel.status.text
    assert panel.retrain(["relu"]) is None and "still searching" in panel.status.text
    panel.stop()
    first.wait(30)
    panel.wait(30)


def test_an_own_loop_panel_asks_for_data_then_searches_a_copy(panels, digits) -> None:
    model = _vanishing()
    panel = panels(model)
    assert panel.autofix() is None
    assert "panel.autofix(data" in panel.status.text


def test_runs_that_begin_and_end_between_two_redraws_still_reach_the_comparison(
    panels, digits
) -> None:
    """A search's short trials can start and finish while the refresher waits (its redraws
    may be a second apart): the panel's next redraw must still list them."""
    panel = panels(_vanishing(), digits, steps=20, refresh_hz=0.01)  # no redraw by itself
    for names in ((), ("relu",)):
        run = panel.session.retrain(names) if names else panel.session.train()
        assert run is not None
        panel.session.wait(60)
    panel.wait()
    names = [r.name for r in panel.runs]
    assert len(names) == 2
    assert set(panel.compare.cells) == set(names)
    assert list(panel.chooser.options) == names
