"""Window index math: split bounds, starts, strides, steps, patches, missing counts, no leakage."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from forecast.data.windows import (
    patch_origins,
    resolve_splits,
    split_bounds,
    target_rows,
    window_missing,
    window_starts,
)
from forecast.errors import DataError


def test_split_bounds_fractions_cover_in_order():
    b = split_bounds(100, [0.7, 0.2, 0.1])
    assert b == {"train": (0, 70), "val": (70, 90), "test": (90, 100)}


@pytest.mark.parametrize("bad", [[0.5, 0.6, 0.1], [0.5, 0.5], [-0.1, 0.5, 0.5]])
def test_split_bounds_rejects_bad_fractions(bad):
    with pytest.raises(DataError, match="fractions"):
        split_bounds(100, bad)


def test_informer_rows_protocol():
    """ETTh1: train [0, 8640), val [8640-L, 11520), test [11520-L, 14400) with L the context."""
    times = np.arange(17420)
    b = resolve_splits(times, {"train": [0, 8640], "val": [8640, 11520], "test": [11520, 14400]})
    context, horizon = 96, 24
    val = window_starts(b["val"], context, horizon)
    test = window_starts(b["test"], context, horizon)
    assert val[0] == 8640 - context and val[-1] + context + horizon == 11520
    assert test[0] == 11520 - context and test[-1] + context + horizon == 14400
    # Informer's count: len(border) - L - H + 1 windows per split
    assert len(test) == (14400 - (11520 - context)) - context - horizon + 1


def test_date_splits():
    times = pd.date_range("2013-01-01", "2014-12-31 18:00", freq="6h").values
    b = resolve_splits(
        times,
        {
            "train": ["2013-01-01", "2014-01-01"],
            "val": ["2014-01-01", "2014-07-01"],
            "test": ["2014-07-01", "2015-01-01"],
        },
    )
    assert b["train"] == (0, 1460) and b["val"][0] == 1460 and b["test"][1] == len(times)


@pytest.mark.parametrize("freq,per_hour", [("1h", 1), ("15min", 4)])
def test_offset_splits_give_the_informer_protocol_at_any_rate_and_start(freq, per_hour):
    """ETT's 12/4/4 months of 30 days from the first time: ETTh rows, and x4 on ETTm files."""
    spec = {"train": ["+0D", "+360D"], "val": ["+360D", "+480D"], "test": ["+480D", "+600D"]}
    for start in ("2016-07-01", "2019-03-15 06:00"):  # any file's dates, not ETT's own
        times = pd.date_range(start, periods=17420 * per_hour, freq=freq).values
        b = resolve_splits(times, spec)
        rows = {"train": (0, 8640), "val": (8640, 11520), "test": (11520, 14400)}
        assert b == {k: (lo * per_hour, hi * per_hour) for k, (lo, hi) in rows.items()}


def test_an_offset_split_past_the_end_of_a_short_file_is_refused():
    spec = {"train": ["+0D", "+360D"], "val": ["+360D", "+480D"], "test": ["+480D", "+600D"]}
    short = pd.date_range("2016-07-01", periods=500 * 24, freq="1h").values  # 500 days
    past = r"split 'test' ends \+600D .*2018-02-21.* past the data's last time 2017-11-12 23:00"
    with pytest.raises(DataError, match=past):
        resolve_splits(short, spec)
    exact = pd.date_range("2016-07-01", periods=600 * 24, freq="1h").values  # ends one step short
    assert resolve_splits(exact, spec)["test"] == (11520, 14400)


@pytest.mark.parametrize("bound", ["+36xD", "soon"])
def test_a_split_bound_that_is_no_row_date_or_offset_is_named(bound):
    times = pd.date_range("2016-07-01", periods=100, freq="1h").values
    spec = {"train": ["+0D", bound], "val": ["+3D", "+4D"], "test": ["+4D", "+4D"]}
    with pytest.raises(DataError, match=re.escape(f"split 'train': bound '{bound}' is neither")):
        resolve_splits(times, spec)


def test_overlapping_splits_refused():
    with pytest.raises(DataError, match="overlap"):
        resolve_splits(np.arange(100), {"train": [0, 60], "val": [50, 80], "test": [80, 100]})


@pytest.mark.parametrize("stride,step", [(1, 1), (3, 1), (1, 2), (4, 3)])
def test_no_window_target_leaves_its_split(stride, step):
    """No leakage: targets stay inside their split; train windows touch nothing after train."""
    n, context, horizon = 200, 7, 5
    bounds = split_bounds(n, [0.6, 0.2, 0.2])
    seen: dict[str, set[int]] = {}
    for split, (lo, hi) in bounds.items():
        starts = window_starts((lo, hi), context, horizon, stride, step)
        assert len(starts) > 0
        rows = target_rows(starts, context, horizon, step)
        assert rows.min() >= lo and rows.max() < hi
        seen[split] = set(rows.ravel().tolist())
        if split == "train":
            last_read = starts + step * (context + horizon - 1)
            assert last_read.max() < hi  # inputs never read val/test
        if stride == 1 and step == 1:  # every admissible target row is used
            assert seen[split] == set(range(max(lo, context), hi))
    assert not (seen["train"] & seen["val"]) and not (seen["val"] & seen["test"])


def test_window_starts_with_step_spans_the_right_rows():
    starts = window_starts((0, 20), context=3, horizon=2, stride=1, step=2)
    # a window reads s, s+2, ..., s+8: the last start is 20 - 1 - 8 = 11
    assert starts[0] == 0 and starts[-1] == 11
    assert target_rows(starts[:1], 3, 2, 2).tolist() == [[6, 8]]


def test_window_starts_empty_and_invalid():
    assert len(window_starts((0, 5), 4, 2)) == 0
    with pytest.raises(DataError):
        window_starts((0, 50), 0, 2)


def test_window_missing_matches_direct_sum():
    rng = np.random.default_rng(0)
    m = rng.integers(0, 5, size=60)
    starts = np.array([0, 3, 10, 41])
    for step in (1, 2):
        got = window_missing(m, starts, 6, step)
        want = [m[s : s + step * 6 : step].sum() for s in starts]
        assert got.tolist() == want


def test_patch_origins_tile_grid():
    o = patch_origins((10, 12), (4, 6))
    assert o.tolist() == [[0, 0], [0, 6], [4, 0], [4, 6]]
    assert patch_origins((10, 12), None).tolist() == [[0, 0]]
    assert len(patch_origins((10, 12), (4, 4), (2, 2))) == 4 * 5
    with pytest.raises(DataError):
        patch_origins((10, 12), (11, 4))
