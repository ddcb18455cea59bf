"""History: bounded memory, no lost extremes, thread safety, export round trips."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from gradwidget.history import History, capacity_within


def _feed(history: History, values: np.ndarray, name: str = "grad_norm") -> None:
    for step, row in enumerate(values):
        history.append(name, step, row)


def test_short_series_is_kept_exactly() -> None:
    h = History(["a", "b"], capacity=8)
    raw = np.arange(10, dtype=np.float32).reshape(5, 2)
    _feed(h, raw)
    np.testing.assert_array_equal(h.grad_norm, raw)
    np.testing.assert_array_equal(h.steps, np.arange(5))


def test_buckets_keep_min_max_last_of_the_raw_points() -> None:
    rng = np.random.default_rng(0)
    raw = rng.lognormal(size=(1000, 3)).astype(np.float32)
    h = History(["a", "b", "c"], capacity=16)
    _feed(h, raw)
    s = h.series("grad_norm")
    assert len(s) <= 17  # capacity plus the bucket still filling
    edges = np.concatenate([[-1], s.steps])
    for i in range(len(s)):
        chunk = raw[edges[i] + 1 : edges[i + 1] + 1]
        np.testing.assert_array_equal(s.lo[i], chunk.min(0))
        np.testing.assert_array_equal(s.hi[i], chunk.max(0))
        np.testing.assert_array_equal(s.last[i], chunk[-1])
    assert s.steps[-1] == 999  # the newest point is always visible


def test_extend_in_batches_keeps_what_one_point_at_a_time_keeps() -> None:
    rng = np.random.default_rng(1)
    raw = rng.lognormal(size=(700, 3)).astype(np.float32)
    raw[rng.random(raw.shape) < 0.05] = np.nan  # "no gradient" here and there
    one, batched = History(["a", "b", "c"], capacity=16), History(["a", "b", "c"], capacity=16)
    _feed(one, raw)
    heard: list[int] = []
    batched.add_listener(lambda name, step, row: heard.append(step))
    start = 0
    while start < len(raw):  # uneven batches, across bucket edges and compactions
        size = int(rng.integers(1, 40))
        batched.extend("grad_norm", list(range(start, min(start + size, len(raw)))),
                       raw[start : start + size])  # fmt: skip
        start += size
    a, b = one.series("grad_norm"), batched.series("grad_norm")
    for field in ("steps", "last", "lo", "hi"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert heard == list(range(len(raw)))  # listeners still hear every point, in order


def test_spikes_survive_a_million_steps_in_bounded_memory() -> None:
    layers = [f"l{i}" for i in range(50)]
    h = History(layers, capacity=1024)
    row = np.ones(50, np.float32)
    spikes = {12_345: 3, 500_000: 17, 999_990: 42}
    sizes = []
    for step in range(1_000_000):
        if step in spikes:
            spiked = row.copy()
            spiked[spikes[step]] = 1e6
            h.append("grad_norm", step, spiked)
        else:
            h.append("grad_norm", step, row)
        if step % 250_000 == 0:
            sizes.append(h.nbytes())
    assert len(set(sizes)) == 1 and sizes[0] < 1_000_000  # flat, and well under a few MB
    s = h.series("grad_norm")
    assert len(s) <= 1025
    for step, layer in spikes.items():
        bucket = np.searchsorted(s.steps, step)
        assert s.hi[bucket, layer] == pytest.approx(1e6)
    assert s.steps[-1] == 999_999


def test_nan_means_missing_and_does_not_hide_values() -> None:
    h = History(["a"], capacity=4)
    for step, v in enumerate([np.nan, 2.0, np.nan, 5.0, 1.0, np.nan, 3.0, 4.0, 0.5]):
        h.append("grad_norm", step, [v])
    s = h.series("grad_norm")
    assert np.nanmax(s.hi) == 5.0 and np.nanmin(s.lo) == 0.5


def test_scalar_series_read_as_vectors() -> None:
    h = History(["a", "b"])
    h.append("loss", 0, 2.5)
    h.append("loss", 1, 2.0)
    assert h.loss.shape == (2,)
    assert h.grad_norm.shape == (0, 2)  # nothing recorded yet: empty, not an error


def test_width_mismatch_is_refused() -> None:
    h = History(["a", "b"])
    h.append("grad_norm", 0, [1, 2])
    with pytest.raises(ValueError, match="expected 2 values"):
        h.append("grad_norm", 1, [1, 2, 3])


def test_snapshot_is_independent_of_later_appends() -> None:
    h = History(["a"], capacity=4)
    _feed(h, np.arange(7, dtype=np.float32).reshape(7, 1))
    snap = h.snapshot()
    before = snap.series("grad_norm")
    _feed(h, np.full((20, 1), 99, np.float32))
    after = snap.series("grad_norm")
    np.testing.assert_array_equal(before.last, after.last)
    assert snap.version < h.version


def test_concurrent_writer_and_readers() -> None:
    h = History([str(i) for i in range(8)], capacity=64)
    done = threading.Event()
    errors: list[BaseException] = []

    def read() -> None:
        while not done.is_set():
            try:
                s = h.snapshot().series("grad_norm")
                assert s.last.shape[0] == s.steps.shape[0]
                assert np.all(np.diff(s.steps) > 0)
            except BaseException as exc:  # surfaced below, in the test thread
                errors.append(exc)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    for step in range(20_000):
        h.append("grad_norm", step, np.full(8, step, np.float32))
    done.set()
    for t in readers:
        t.join()
    assert not errors
    assert h.series("grad_norm").steps[-1] == 19_999


def test_json_round_trip_keeps_everything(tmp_path) -> None:
    h = History(["a", "b"], capacity=8)
    rng = np.random.default_rng(1)
    _feed(h, rng.random((37, 2)).astype(np.float32))
    h.append("loss", 0, np.nan)
    path = tmp_path / "h.json"
    h.to_json(path)
    back = History.from_json(path)
    assert back.layers == h.layers
    for name in h.metrics:
        a, b = h.series(name), back.series(name)
        for field in ("steps", "last", "lo", "hi"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    # it keeps compacting the same way after the reload
    for step in range(37, 60):
        h.append("grad_norm", step, [1, 1])
        back.append("grad_norm", step, [1, 1])
    np.testing.assert_array_equal(h.grad_norm, back.grad_norm)


def test_dataframe_and_csv_long_format(tmp_path) -> None:
    h = History(["a", "b"])
    h.append("grad_norm", 0, [1, 2])
    h.append("loss", 0, 0.5)
    df = h.to_dataframe()
    assert set(df.columns) >= {"step", "layer", "metric", "value"}
    assert len(df) == 3
    row = df[(df.metric == "grad_norm") & (df.layer == "b")]
    assert row.value.item() == 2
    h.to_csv(tmp_path / "h.csv")
    assert (tmp_path / "h.csv").read_text().startswith("step,layer,metric,value")


def test_a_frozen_view_reads_each_series_once_and_refuses_changes() -> None:
    h = History(("a", "b"))
    for step in range(5):
        h.append("grad_norm", step, [step, 2 * step])
    view = h.frozen()
    first = view.series("grad_norm")
    assert view.series("grad_norm") is first  # read (copied) once
    np.testing.assert_array_equal(first.last, h.series("grad_norm").last)
    assert view.frozen() is view and len(view) == 5 and view.metrics == ("grad_norm",)
    with pytest.raises(ValueError, match="read-only"):
        first.last[0, 0] = 9.0
    with pytest.raises(TypeError, match="read only"):
        view.append("grad_norm", 5, [1.0, 1.0])


@pytest.mark.parametrize("nbytes", [4_000, 100_000, 2_500_000])
def test_capacity_within_is_the_largest_that_fits(nbytes: int) -> None:
    layers = [f"l{i}" for i in range(7)]
    names = {"grad_norm": 7, "act_std": 7, "loss": 1}

    def filled(capacity: int) -> int:
        h = History(layers, capacity)
        for name, width in names.items():
            h.append(name, 0, np.ones(width))
        return h.nbytes()

    capacity = capacity_within(nbytes, list(names.values()))
    assert capacity % 2 == 0
    assert filled(capacity) <= nbytes < filled(capacity + 2)
