"""Chart builders and updaters, fed with hand-filled histories; numpy is the oracle."""

from __future__ import annotations

import math

import bqplot as bq
import numpy as np
import pytest

from gradwidget import Finding, History, Severity
from gradwidget.session.summary import RunSummary
from gradwidget.view._data import (
    FLOOR,
    decimate_minmax,
    depth_colors,
    heat_matrix,
    log_domain,
    log_ticks,
    ordinal_num_ticks,
    positive,
    spread_band,
    step_ticks,
    thin_every,
    typical,
)
from gradwidget.view._ranges import dodge, loss_range, nice_ticks
from gradwidget.view._widgets import close_tree
from gradwidget.view.charts import FlowChart, GradChart, HeatChart
from gradwidget.view.compare import CompareView
from gradwidget.view.diagnosis_box import HEALTHY, DiagnosisBox
from gradwidget.view.metrics import ActivityChart, LossChart, activity_note
from gradwidget.view.table import format_rows, power_of_ten, to_html
from gradwidget.view.updates import GUIDE, UpdateChart, block_ratios

LAYERS = ("0", "2", "4")


def filled(steps: int = 300, capacity: int = 64, seed: int = 0) -> History:
    """A history with every series the charts read, from a seeded generator."""
    rng = np.random.default_rng(seed)
    history = History(LAYERS, capacity)
    for step in range(steps):
        history.append("grad_norm", step, rng.lognormal(-3, 1, 3))
        history.append("loss", step, 2.0 / (1 + step) + rng.random() * 0.01)
        if step % 10 == 0:
            history.append("dead_frac", step, [0.1, np.nan, rng.random()])
            history.append("saturated_frac", step, [rng.random(), 0.2, 0.3])
            history.append("accuracy", step, rng.random())
    return history


# -- pure helpers ------------------------------------------------------------------------------


def luminance(hex_colour: str) -> float:
    r, g, b = (int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("n", [1, 2, 7, 30])
def test_depth_colours_run_from_blue_to_red_and_read_on_white_and_on_black(n: int) -> None:
    colours = depth_colors(n)
    assert len(colours) == n and len(set(colours)) == n
    assert all(len(c) == 7 and c.startswith("#") for c in colours)
    lum = np.array([luminance(c) for c in colours])
    assert np.all((lum > 70) & (lum < 190))  # JupyterLab's dark theme is near black
    first, last = ([int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in (colours[0], colours[-1]))
    assert first[2] > first[0]  # the input is blue
    assert last[0] > last[2] or n == 1  # the output red


def test_positive_puts_nan_zero_negative_and_inf_on_the_floor() -> None:
    raw = np.array([np.nan, 0.0, -1.0, np.inf, 1e-20, 0.5, 3.0])
    out = positive(raw)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:5], np.float32(FLOOR))
    np.testing.assert_array_equal(out[5:], np.float32([0.5, 3.0]))


def test_decimation_bounds_points_and_keeps_every_extreme() -> None:
    rng = np.random.default_rng(1)
    steps = np.arange(5000)
    values = rng.random((5000, 4)).astype(np.float32)
    values[1234, 2] = 1e6  # a one-step spike
    values[4321, 0] = -5.0  # a one-step dip
    x, y = decimate_minmax(steps, values, values, max_points=200)
    assert len(x) <= 200 and y.shape == (4, len(x))
    assert np.all(np.diff(x) >= 0)
    np.testing.assert_array_equal(y.max(axis=1), values.max(axis=0))
    np.testing.assert_array_equal(y.min(axis=1), values.min(axis=0))
    assert x[np.argmax(y[2])] in (1234 // 50 * 50, 1234 // 50 * 50 + 49)


def test_decimation_of_few_points_keeps_them_all_in_order() -> None:
    steps = np.array([0, 3, 7])
    values = np.array([[1.0], [5.0], [2.0]], np.float32)
    x, y = decimate_minmax(steps, values, values, max_points=100)
    np.testing.assert_array_equal(np.unique(x), steps)
    np.testing.assert_array_equal(y[0][::2], values[:, 0])


def test_decimation_uses_bucket_lo_and_hi_and_leaves_empty_groups_nan() -> None:
    steps = np.arange(4)
    lo = np.array([[1.0, np.nan], [0.5, np.nan], [2.0, 1.0], [3.0, 1.0]], np.float32)
    hi = lo + 10
    x, y = decimate_minmax(steps, lo, hi, max_points=4)  # two groups of two buckets
    np.testing.assert_array_equal(x, [0, 1, 2, 3])
    # group 1: its max (11, step 0) came before its min (0.5, step 1); group 2: the other way
    np.testing.assert_array_equal(y[0], [11.0, 0.5, 2.0, 13.0])
    assert np.isnan(y[1, :2]).all() and not np.isinf(y).any()


def test_heat_matrix_is_the_mean_log10_over_each_column() -> None:
    rng = np.random.default_rng(2)
    steps = np.arange(1000)
    values = rng.lognormal(0, 2, (1000, 3))
    columns, color = heat_matrix(steps, values, max_columns=200)
    assert color.shape == (3, 200) and len(columns) == 200
    expected = np.log10(values).reshape(200, 5, 3).mean(axis=1).T
    np.testing.assert_allclose(color, expected, atol=1e-5)
    np.testing.assert_array_equal(columns, steps[::5])


def test_heat_matrix_leaves_missing_gradients_out_instead_of_flooring_them() -> None:
    values = np.array([[1e-3, np.nan], [1e-1, 0.0], [np.nan, np.nan]], np.float32)
    _, color = heat_matrix(np.arange(3), values, max_columns=3)
    np.testing.assert_allclose(color[0], [-3, -1, np.nan])
    assert np.isnan(color[1]).all()  # never log10(1e-12) = -12, which flattens the range


def test_log_domain_is_never_zero_width() -> None:
    assert log_domain(np.full(5, 0.1, np.float32)) == pytest.approx((0.01, 1.0))
    assert log_domain(np.zeros(0)) == (FLOOR, 1.0)
    low, high = log_domain(np.array([1e-3, np.nan, 4.0]), np.array([0.0, 50.0]))
    assert (low, high) == pytest.approx((1e-3, 50.0))


@pytest.mark.parametrize(("low", "high"), [(1e-9, 10.0), (2e-4, 3e-1), (3e-3, 8e-3), (1e-3, 1e-2)])
def test_log_ticks_are_few_inside_the_domain_and_never_the_crowded_1_to_9(low, high) -> None:
    ticks = log_ticks(low, high)
    assert 2 <= len(ticks) <= 5 or (len(ticks) >= 1 and high / low < 3)
    assert np.all((ticks >= low * 0.999) & (ticks <= high * 1.001))
    mantissas = np.round(ticks / 10.0 ** np.floor(np.log10(ticks) + 1e-9), 6)
    assert set(mantissas) <= {1.0, 2.0, 5.0}


def bqplot_ordinal_ticks(n: int, num_ticks: int | None) -> list[int]:
    """The categories bqplot 0.13's ordinal axis labels (its get_ticks_from_array_or_length)."""
    if num_ticks is None or n <= num_ticks:
        return list(range(n))
    return list(range(0, n, n // (num_ticks - 1)))


@pytest.mark.parametrize("n", [3, 12, 75, 500])
def test_thinned_ordinal_labels_fit_side_by_side_at_any_count(n: int) -> None:
    labels = [f"h.{i}.attn.c_attn" for i in range(n)]
    every = thin_every(labels, length_px=340, char_px=7)
    assert every * 340 / n >= 7 * max(map(len, labels))  # the room of one label
    shown = bqplot_ordinal_ticks(n, ordinal_num_ticks(n, every))
    assert shown[0] == 0 and len(shown) >= 1
    assert np.all(np.diff(shown) >= every)  # never closer than the room they need


def test_typical_is_a_median_of_each_run_and_the_band_keeps_every_spike() -> None:
    rng = np.random.default_rng(3)
    steps = np.arange(600)
    last = rng.lognormal(-3, 0.3, (600, 4)).astype(np.float32)
    last[123, 1] = 1e4  # a one-step spike: not the typical value, but in the band
    x, y = typical(steps, last, max_points=100)
    assert y.shape == (4, 100) and x[-1] == 599 and x[0] == 5
    run = last[120:126]  # the median of its first, middle and last value
    np.testing.assert_array_equal(y[:, 20], np.median(run[[0, 2, 5]], axis=0))
    assert y.max() < 1.0
    band = spread_band(steps, last, last, max_points=100)
    assert band.shape == (2, 100) and band[1].max() == np.float32(1e4)
    np.testing.assert_allclose(band[0, 20], last[120:126].min(), rtol=1e-6)


# -- charts ------------------------------------------------------------------------------------


def test_grad_chart_draws_one_line_per_layer_over_the_spread_of_all() -> None:
    history = filled()
    chart = GradChart(history.layers, max_points=100)
    chart.update(history)
    s = history.series("grad_norm")
    assert chart.columns.labels == LAYERS and len(chart.lines.colors) == 3
    assert chart.lines.labels[0].startswith("0 (1st of 3 from the input): gradient norm ")
    assert chart.lines.labels[-1].endswith(f"at step {s.steps[-1]}")
    assert chart.lines.y.shape[0] == 3 and chart.lines.y.dtype == np.float32
    assert chart.lines.x.shape[0] <= 100 and chart.lines.x[-1] == s.steps[-1]
    _, expected = typical(s.steps, s.last, 100)
    np.testing.assert_array_equal(chart.lines.y, expected)
    assert chart.band.y[1].max() == s.hi.max() and chart.band.y[0].min() == s.lo.min()
    assert chart.y_scale.min <= s.lo.min() and chart.y_scale.max >= s.hi.max()
    assert chart.menu.layout.display == "none"  # three layers: nothing to drill into


def test_grad_chart_waits_for_two_points_and_floors_missing_gradients() -> None:
    history = History(LAYERS, 8)
    chart = GradChart(LAYERS)
    history.append("grad_norm", 0, [1.0, 2.0, 3.0])
    chart.update(history)
    assert chart.lines.x.size == 0
    history.append("grad_norm", 1, [np.nan, 0.0, 3.0])
    chart.update(history)
    assert chart.lines.y[0].min() == np.float32(FLOOR) and chart.lines.y[1].min() == np.float32(
        FLOOR
    )


def transformer(blocks: int = 12, steps: int = 50) -> History:
    names = ["wte", *(f"h.{b}.{p}" for b in range(blocks) for p in ("ln_1", "attn", "mlp"))]
    history = History([*names, "ln_f"], 64)
    rng = np.random.default_rng(4)
    for step in range(steps):
        history.append("grad_norm", step, rng.lognormal(-3, 1, len(history.layers)))
    return history


def test_grad_chart_of_a_transformer_draws_at_most_12_block_lines_and_drills_in() -> None:
    history = transformer()
    chart = GradChart(history.layers)
    chart.update(history)
    labels = chart.columns.labels
    assert len(chart.lines.labels) == 12 and chart.lines.y.shape[0] == 12
    assert labels[0] == "wte" and labels[-1] == "ln_f"
    assert chart.lines.labels[4].startswith("h.4 (5th of 12 from the input): gradient norm ")
    assert all(f"■</span> {name}</span>" in chart.key.value for name in labels)  # all named
    s = history.series("grad_norm")
    _, per_layer = typical(s.steps, s.last, 300)
    h0 = np.sqrt((per_layer[1:4].astype(np.float64) ** 2).sum(axis=0))
    np.testing.assert_allclose(chart.lines.y[labels.index("h.0")], h0, rtol=1e-5)
    chart.menu.value = "block:h.3"  # the view menu: one block's layers
    assert chart.columns.labels == ("h.3.ln_1", "h.3.attn", "h.3.mlp")
    assert chart.lines.labels[1].startswith("h.3.attn (2nd of 3 from the input)")
    np.testing.assert_array_equal(chart.lines.y, per_layer[10:13])
    chart.menu.value = "kind:attention"
    assert len(chart.columns) == 12 and chart.columns.labels[-1] == "h.11.attn"
    assert ("Kind: norm", "kind:norm") in chart.menu.options


def test_flow_chart_shows_the_latest_norms_the_band_and_flagged_layers() -> None:
    history = filled()
    chart = FlowChart(LAYERS, band=(1e-3, 70.0))
    chart.update(history, flagged=["2"])
    latest = history.grad_norm[-1]
    np.testing.assert_array_equal(chart.profile.y, latest)
    np.testing.assert_allclose(chart.range.y[0], np.full(3, 1e-3 * latest[-1]), rtol=1e-6)
    np.testing.assert_allclose(chart.range.y[1], np.full(3, 70 * latest[-1]), rtol=1e-6)
    assert list(chart.flagged.x) == ["2"] and chart.flagged.y[0] == latest[1]


def test_flow_chart_of_a_transformer_puts_blocks_along_depth_with_thinned_ticks() -> None:
    history = transformer(blocks=40)
    chart = FlowChart(history.layers, band=(1e-3, 70.0))
    chart.update(history, flagged=["h.39.attn"])
    assert list(chart.x_scale.domain) == ["wte", *(f"h.{b}" for b in range(40)), "ln_f"]
    assert len(chart.profile.y) == 41 and list(chart.norms.x) == ["ln_f"]  # no sawtooth
    latest = history.grad_norm[-1].astype(np.float64)
    np.testing.assert_allclose(chart.profile.y[1], np.linalg.norm(latest[1:4]), rtol=1e-5)
    assert list(chart.flagged.x) == ["h.39"]
    shown = bqplot_ordinal_ticks(42, chart.x_axis.num_ticks)
    assert 2 <= len(shown) < 42 and chart.x_axis.label.startswith("block")


def test_a_batchnorm_mlp_draws_its_norm_layers_as_their_own_line() -> None:
    layers = ("0", "1", "3", "4", "6")  # Linear, BatchNorm, Linear, BatchNorm, Linear
    history = History(layers, 8)
    history.append("grad_norm", 0, [1e-3, 1.0, 1e-2, 1.0, 1e-1])
    chart = FlowChart(layers, band=(1e-3, 70.0))
    chart.columns = gw_columns(layers, norm=(False, True, False, True, False))
    chart.update(history)
    np.testing.assert_array_equal(chart.profile.y, np.float32([1e-3, 1e-2, 1e-1]))
    np.testing.assert_array_equal(chart.norms.y, np.float32([1.0, 1.0]))


def test_flow_chart_never_shows_a_point_off_its_domain_when_the_layers_change() -> None:
    # Another run on show (a Residual trial after the baseline): the scale's domain and the
    # marks' x reach the browser in separate messages, and a point off the domain is NaN.
    chart = FlowChart(LAYERS, band=(1e-3, 70.0))
    marks = (chart.profile, chart.range, chart.points, chart.norms, chart.flagged)
    off: list[str] = []

    def check(change: dict) -> None:
        domain = set(chart.x_scale.domain)
        off.extend(str(x) for mark in marks for x in mark.x if x not in domain)

    chart.x_scale.observe(check, "domain")
    for mark in marks:
        mark.observe(check, "x")
    chart.set_layers(("0.0", "0.2", "1.0", "1.2", "4"))
    assert off == [] and list(chart.x_scale.domain) == list(chart.columns.labels)


def gw_columns(layers, norm):
    from gradwidget.view._depth import Columns

    members = tuple((i,) for i in range(len(layers)))
    return Columns(tuple(layers), tuple(layers), members, tuple(norm), "layer")


def test_heat_chart_redraws_at_most_once_per_interval_unless_forced() -> None:
    history = filled(steps=900, capacity=1024)
    chart = HeatChart(LAYERS, max_cells=600, min_interval=60.0)
    assert chart.update(history)
    assert chart.map.color.shape == (3, 180)  # ceil(900 / 200) = 5 steps per column
    history.append("grad_norm", 900, [1.0, 1.0, 1.0])
    assert not chart.update(history)
    assert chart.update(history, force=True)
    _, expected = heat_matrix(history.steps, history.grad_norm, 200)
    np.testing.assert_array_equal(chart.map.color, expected)
    assert len(chart.map.column) == expected.shape[1]
    assert chart.color_scale.min == expected.min() and chart.color_scale.max == expected.max()


def test_heat_chart_of_500_layers_has_at_most_48_rows_and_thinned_labels() -> None:
    layers = [f"blocks.{b}.{i}" for b in range(50) for i in range(10)]
    history = History(layers, 64)
    rng = np.random.default_rng(5)
    for step in range(100):
        row = rng.lognormal(-3, 1, 500)
        row[::7] = np.nan  # layers without a gradient do not flatten the colours
        history.append("grad_norm", step, row)
    chart = HeatChart(layers)
    assert chart.update(history)
    rows, cols = chart.map.color.shape
    assert rows <= 48 and rows * cols <= 6000
    shown = bqplot_ordinal_ticks(rows, chart.row_axis.num_ticks)
    assert chart.color_scale.min > -6 and len(shown) <= 12


def test_loss_chart_draws_loss_and_accuracy_when_recorded() -> None:
    history = filled()
    chart = LossChart(max_points=100)
    chart.update(history)
    loss = history.series("loss")
    assert chart.lines["loss"].y.max() == loss.hi.max()
    assert chart.lines["loss"].y.min() == loss.lo.min()
    np.testing.assert_array_equal(np.unique(chart.lines["accuracy"].y), np.unique(history.accuracy))
    assert chart.lines["test_accuracy"].y.size == 0  # never recorded: nothing drawn
    scale = chart.loss_axis.scale
    assert isinstance(scale, bq.LogScale) and chart.lines["loss"].scales["y"] is scale
    assert float(loss.lo.min()) / 1.1 < scale.min < float(loss.lo.min())  # not below the loss
    assert chart.acc_axis in chart.figure.axes and chart.noted.note.value == ""
    assert chart.figure.fig_margin["right"] >= 50  # room for the "100%" tick label
    for step in (150, 200, 250):  # a test accuracy measured late
        history.append("test_accuracy", step, 0.5)
    chart.update(history)
    ticks = chart.x_axis.tick_values  # the steps of every series, not only the last one's
    assert ticks[0] == 0 and ticks[-1] >= 200


def test_loss_chart_of_an_own_loop_has_no_accuracy_axis_and_a_linear_axis_for_negatives():
    history = History(LAYERS)
    for step in range(50):
        history.append("loss", step, 1.0 - step / 10)  # a loss that goes negative
    chart = LossChart()
    chart.update(history)
    assert chart.acc_axis not in chart.figure.axes  # no axis without data
    scale = chart.loss_axis.scale
    assert isinstance(scale, bq.LinearScale) and chart.lines["loss"].scales["y"] is scale
    assert -3.9 > scale.min > -4.1 - 0.2 and chart.loss_axis.axis.scale is scale
    ticks = np.asarray(chart.loss_axis.axis.tick_values)
    assert np.all(ticks == np.round(ticks)) and np.all(ticks >= -3.9)


def test_a_loss_chart_with_no_loss_says_why() -> None:
    history = History(LAYERS)
    history.append("grad_norm", 0, [1.0, 1.0, 1.0])
    chart = LossChart()
    chart.update(history)
    assert "panel.capture(loss)" in chart.noted.note.value
    assert "gw-empty-note" in chart.noted.note._dom_classes


def test_one_spike_does_not_squeeze_the_runs_together() -> None:
    steps = np.arange(200)
    baseline = np.full(200, 2.3)
    fixed = 0.06 + 2.24 * np.exp(-steps / 20)
    spiky = fixed.copy()
    spiky[:3] = 20.0  # the residual run's first steps
    axis = loss_range([baseline, fixed, spiky])
    apart = axis.fraction(np.array([2.3]))[0] - axis.fraction(np.array([fixed[-1]]))[0]
    assert axis.log and apart > 0.5  # linear: 0.11 of the height
    assert axis.low <= 0.06 and axis.low > 0.05 and axis.high >= 20
    assert list(axis.ticks) == [0.1, 1.0, 10.0]
    narrow = loss_range([np.array([3.5, 8.8])])  # under a decade: round steps, not one tick
    assert narrow.log and list(narrow.ticks) == [4.0, 6.0, 8.0]


@pytest.mark.parametrize(("low", "high"), [(0.0, 1.0), (-1.3, 21.7), (0.06, 0.0601), (3, 3000)])
def test_nice_ticks_are_round_and_inside(low, high) -> None:
    ticks = nice_ticks(low, high)
    assert 2 <= len(ticks) <= 6 and ticks[0] >= low and ticks[-1] <= high + 1e-12
    steps = np.diff(ticks)
    mantissa = steps[0] / 10 ** np.floor(np.log10(steps[0]))
    assert np.allclose(steps, steps[0]) and round(mantissa, 6) in (1.0, 2.0, 5.0)


def test_dodged_labels_keep_their_gap_and_stay_inside() -> None:
    placed = dodge(np.array([0.5, 0.51, 0.99, 0.98, 0.1]), gap=0.08)
    ordered = np.sort(placed)
    assert np.all(np.diff(ordered) >= 0.08 - 1e-12) and placed.min() >= 0 and placed.max() <= 1
    assert placed[4] == 0.1  # a label with room stays at its value
    np.testing.assert_array_equal(dodge(np.array([0.2, 0.7]), 0.1), [0.2, 0.7])


def test_activity_chart_shows_the_latest_dead_and_saturated_fractions() -> None:
    history = filled()
    chart = ActivityChart(LAYERS)
    chart.update(history)
    dead, saturated = history.dead_frac[-1], history.saturated_frac[-1]
    np.testing.assert_array_equal(chart.bars.y[0], np.nan_to_num(dead))
    np.testing.assert_array_equal(chart.bars.y[1], saturated)


# -- diagnosis box, comparison, table ----------------------------------------------------------


def test_diagnosis_box_says_healthy_or_lists_findings_with_numbers() -> None:
    box = DiagnosisBox({"relu": "ReLU"})
    box.show([])
    assert HEALTHY in box.value
    finding = Finding(
        kind="vanishing",
        severity=Severity.CRITICAL,
        layers=("0", "2"),
        evidence={"ratio": 1.5e-5},
        message="Gradients shrink 60000x from output to input.",
        remedies=("relu",),
    )
    box.show([finding])
    for text in (finding.title, finding.message, "<code>0</code>", "1.5e-05", "ReLU"):
        assert text in box.value


ROWS = [
    RunSummary("baseline", "", 2.30258, 0.1, 6.12e-08, None, 2.04),
    RunSummary("<ReLU>", "relu", 0.0614, 0.9712, 0.0614, 1240, 1.0),
    RunSummary("lost", "relu, he_init", math.nan, math.nan, math.nan, 40, 12.345),
]


def test_the_table_reads_in_words_and_formats_numbers_for_their_meaning() -> None:
    table = format_rows(ROWS)
    assert table.headers == (
        "run", "fixes", "final loss", "accuracy", "first/last gradient ratio",
        "steps to target", "seconds",
    )  # fmt: skip
    assert not any("_" in h for h in table.headers)
    assert table.cells[0] == (
        "baseline",
        "none",
        "2.3",
        "10.0%",
        "6.1 × 10⁻⁸",
        "not reached",
        "2.0",
    )
    assert table.cells[1][2:6] == ("0.0614", "97.1%", "6.1 × 10⁻²", "1,240")
    assert table.cells[2][2:5] == ("–", "–", "–") and table.cells[2][6] == "12.3"
    assert table.cells[2][1] == "ReLU, He init"  # the fixes by their labels
    assert table.numeric == (False, False, True, True, True, True, True)
    assert power_of_ten(9.96e-3) == "1.0 × 10⁻²" and power_of_ten(1.26) == "1.3"


def test_table_html_has_every_row_a_colour_chip_and_right_aligned_numbers() -> None:
    html_table = to_html(ROWS, {"baseline": "#1f77b4"})
    assert html_table.count("<tr>") == 4  # header + 3 rows
    assert "&lt;ReLU&gt;" in html_table and "background:#1f77b4" in html_table
    assert html_table.count('class="gw-chip"') == 1  # only the runs given a colour
    assert html_table.count('class="gw-num"') == 5 * 4  # 5 number columns, 4 rows
    assert "<td>&lt;ReLU&gt;</td>" in html_table and '<th class="gw-num">seconds</th>' in html_table
    assert "97.1%" in html_table and "training settings" not in html_table
    with_training = to_html([*ROWS, RunSummary("lr", "lower_lr", 1.0, 0.5, 1.0, 3, 1.0, "lr x0.1")])
    assert "training settings" in with_training and "lr x0.1" in with_training


def test_comparison_frame_keeps_its_columns_and_shows_the_table_in_words() -> None:
    import pandas as pd

    from gradwidget.session.summary import COLUMNS
    from gradwidget.view._frame import Comparison

    df = Comparison.of(ROWS)
    assert isinstance(df, pd.DataFrame) and tuple(df.columns) == COLUMNS
    assert df["final_loss"].iloc[1] == pytest.approx(0.0614)
    shown = df._repr_html_()
    assert "first/last gradient ratio" in shown and "97.1%" in shown and "not reached" in shown
    assert type(df[["run"]]) is pd.DataFrame  # a slice is a plain frame
    assert "final_loss" in df[["run", "final_loss"]]._repr_html_()


def test_compare_view_shares_scales_labels_final_losses_and_removes_runs() -> None:
    removed: list[str] = []
    view = CompareView(removed.append)
    # shown before any data: every scale has a domain (else bqplot's view fails to build)
    assert view.scales[1].min > 0 and view.loss_scales["x"].max is not None
    low, high = filled(seed=1), filled(seed=2)
    for step in range(300):  # a second run whose gradients are 1000x smaller
        high.append("grad_norm", 300 + step, np.full(3, 1e-6))
        high.append("loss", 300 + step, 2.3)
    view.add_run("a")
    view.add_run("b")
    view.update({"a": low, "b": high}, ROWS[:2])
    a, b = view.cells["a"].chart, view.cells["b"].chart
    assert a.x_scale is b.x_scale and a.y_scale is b.y_scale
    # one set of step ticks over the longest run, not the short run's own crowded at the left
    assert list(a.x_axis.tick_values) == list(b.x_axis.tick_values)
    assert max(a.x_axis.tick_values) > max(low.series("grad_norm").steps)
    both = np.concatenate([a.lines.y.ravel(), b.lines.y.ravel()])
    # the shared domain spans both runs, widened to whole decades
    smallest, largest = float(both.min()), float(both.max())
    assert smallest / 10 < view.scales[1].min <= smallest * (1 + 1e-6)
    assert largest * (1 - 1e-6) <= view.scales[1].max < largest * 10
    assert len(view.loss_lines) == 2 and view.finals in view.loss_figure.marks
    assert list(view.finals.text) == [f"{low.loss[-1]:.3g}", "2.3"]
    first = min(float(line.x[0]) for line in view.loss_lines.values())
    assert (view.loss_scales["x"].min, view.loss_scales["x"].max) == (first, 599)
    assert list(view.finals.colors) == [view.styles["a"][0], view.styles["b"][0]]
    assert "gw-loss-overlay" in view.loss_figure._dom_classes
    assert view.table.value.count('class="gw-chip"') == 0  # rows are named baseline and <ReLU>
    view.cells["b"].remove_button.click()
    assert removed == ["b"]
    view.update({"a": low}, [])
    assert list(view.cells) == ["a"] and list(view.loss_lines) == ["a"]
    assert len(view.grid.children) == 1 and len(view.loss_figure.marks) == 2


def test_close_tree_closes_figures_marks_and_scales() -> None:
    chart = GradChart(LAYERS)
    close_tree(chart.figure)
    for widget in (chart.figure, chart.lines, chart.x_scale, chart.y_scale):
        assert widget.comm is None
    assert isinstance(chart.y_scale, bq.LogScale)


@pytest.mark.parametrize(("first", "last"), [(0, 3), (0, 119), (5, 123_456), (100, 101)])
def test_step_ticks_are_few_round_whole_steps_inside_the_range(first, last) -> None:
    ticks = step_ticks(first, last)
    assert 1 <= len(ticks) <= 5 and np.all(ticks == np.round(ticks))
    assert ticks[0] >= first and ticks[-1] <= last
    spacing = np.unique(np.diff(ticks))
    assert len(spacing) <= 1  # evenly spaced


@pytest.mark.parametrize("n_layers", [10, 500])
def test_a_refresh_sends_at_most_10k_points_whatever_the_layer_count(n_layers: int) -> None:
    from benchmarks.ui import CommTap, _scale_names
    from gradwidget import Thresholds
    from gradwidget.view.live import LiveCharts

    history = History(_scale_names(n_layers), 1024)
    rng = np.random.default_rng(6)
    for step in range(3000):
        history.append("grad_norm", step, rng.lognormal(-3, 1, n_layers))
        history.append("loss", step, 1.0 / (1 + step))
    with CommTap().installed() as tap:
        live = LiveCharts(Thresholds())
    live.draw(history.snapshot(), final=True)  # the first draw, with the heat map
    history.append("grad_norm", 3000, rng.lognormal(-3, 1, n_layers))
    begin = len(tap.messages)
    live.draw(history.snapshot(), final=True)
    points = sum(m.buffer_bytes for m in tap.messages[begin:]) / 4  # float32 values
    assert 1000 < points <= 10_000
    assert len(live.dashboard.grad.lines.y) <= 12
    close_tree(live)


def test_with_the_model_the_flow_chart_tells_norm_layers_apart_and_names_them_in_full() -> None:
    import torch.nn as nn

    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    layers = ("0", "1", "2")
    chart = FlowChart(layers, band=(1e-3, 70.0))
    assert list(chart.norms.x) == []  # names alone: "1" could be anything
    chart.set_layers(layers, model)
    assert list(chart.norms.x) == ["1"] and list(chart.points.x) == ["0", "2"]
    assert list(chart.points.names) == ["0 · Linear · 40 parameters", "2 · Linear · 18 parameters"]
    assert list(chart.norms.names) == ["1 · BatchNorm1d · 16 parameters"]


def test_an_activity_chart_with_no_bar_says_why() -> None:
    chart = ActivityChart(LAYERS)
    assert "act_every" in chart.noted.note.value  # nothing sampled yet
    history = History(LAYERS)
    history.append("dead_frac", 0, [0.0, 0.0, 0.0])
    history.append("saturated_frac", 0, [np.nan] * 3)  # no sigmoid or tanh anywhere
    chart.update(history)
    assert "nothing can saturate" in chart.noted.note.value
    assert chart.noted.note.layout.display == ""
    history.append("dead_frac", 1, [0.0, 0.3, 0.0])
    history.append("saturated_frac", 1, [np.nan] * 3)
    chart.update(history)
    assert chart.noted.note.value == "" and chart.noted.note.layout.display == "none"
    assert activity_note(np.zeros(3), np.zeros(3)) == (
        "No dead or saturated units at the latest sampled step."
    )


def ratios_history(layers: tuple[str, ...], steps: int = 40) -> tuple[History, np.ndarray]:
    """Update ratios of known weights and updates: (history, (steps, layers) update norms)."""
    rng = np.random.default_rng(9)
    history = History(layers)
    weights = rng.uniform(1, 3, (steps, len(layers)))
    moved = weights * 10.0 ** rng.uniform(-5, -2, (steps, len(layers)))
    for step in range(steps):
        history.append("weight_norm", step * 10, weights[step])
        history.append("update_ratio", step * 10, moved[step] / weights[step])
    return history, moved


def test_update_chart_draws_each_blocks_update_over_weight_with_the_guide() -> None:
    history = transformer(blocks=3)
    layers = history.layers
    ratios, moved = ratios_history(layers)
    chart = UpdateChart(layers, max_points=1000)
    assert "No update ratios yet" in chart.noted.note.value
    ticks = chart.figure.axes[1].tick_values  # shown before data: decades, not 1..9 crowded
    assert ticks is not None and np.allclose(np.log10(ticks), np.round(np.log10(ticks)))
    chart.update(ratios)
    assert "gw-update-chart" in chart.figure._dom_classes and chart.noted.note.value == ""
    assert chart.columns.labels == ("wte", "h.0", "h.1", "h.2", "ln_f")
    # the oracle: ‖Δθ‖/‖θ‖ over all parameters of block h.1 (layers 4, 5, 6)
    weights = ratios.weight_norm[:, 4:7].astype(np.float64)
    expected = np.sqrt((moved[:, 4:7] ** 2).sum(1)) / np.sqrt((weights**2).sum(1))
    np.testing.assert_allclose(chart.lines.y[2], expected, rtol=1e-4)
    assert list(chart.guide.y) == [GUIDE, GUIDE]
    assert chart.y_scale.min <= GUIDE <= chart.y_scale.max
    assert chart.lines.labels[0].startswith("wte: update/weight ")
    # without weight norms: exact for single layers
    only = History(layers)
    for step in range(5):
        only.append("update_ratio", step, ratios.update_ratio[step])
    single = block_ratios(chart.columns, only.update_ratio, None)
    np.testing.assert_allclose(single[:, 0], only.update_ratio[:, 0], rtol=1e-6)


def test_the_dashboard_shows_the_update_chart() -> None:
    from gradwidget.view.dashboard import Dashboard

    history, _ = ratios_history(LAYERS)
    for step in range(40):
        history.append("grad_norm", step * 10, [1.0, 1.0, 1.0])
    board = Dashboard(LAYERS, (1e-3, 70.0))
    board.update(history, force=True)
    assert board.updates.widget in board.children and len(board.updates.lines.x) > 1
    close_tree(board)
