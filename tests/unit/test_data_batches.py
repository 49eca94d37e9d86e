"""Batches built in place by ``GridWindows.__getitems__`` equal collated single items."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from torch.utils.data import DataLoader, default_collate

from forecast.data.calendar import calendar_features
from forecast.data.datasets import GridWindows, collate_windows
from forecast.data.normalize import Normalizer
from forecast.data.reader import FrameReader
from forecast.data.sources import StoreSource


@pytest.fixture(params=[1e-4, 100.0], ids=["lazy", "in_memory"])
def reader(tmp_path, request):
    rng = np.random.default_rng(5)
    a = rng.normal(3, 2, (40, 2, 6, 7)).astype("f4")
    a[7, 1, 2:4, 3] = np.nan
    a[21, 0] = np.nan
    ds = xr.Dataset(
        {"u": (("time", "lat", "lon"), a[:, 0]), "v": (("time", "lat", "lon"), a[:, 1])},
        coords={"time": pd.date_range("2022-01-01", periods=40, freq="h")},
    )
    ds.chunk({"time": 9}).to_zarr(tmp_path / "b.zarr", zarr_format=3, consolidated=False)
    src = StoreSource(str(tmp_path / "b.zarr"))
    r = FrameReader(src, ["u", "v"], ("lat", "lon"), memory_budget_mb=request.param)
    assert r.in_memory == (request.param > 1)
    return r, ds


@pytest.mark.parametrize("patched", [False, True])
def test_getitems_equals_collated_items(reader, patched):
    r, ds = reader
    origins = np.array([[0, 0], [2, 3], [3, 1]]) if patched else None
    cal = calendar_features(ds["time"].values).astype("f4")
    w = GridWindows(
        r, np.arange(0, 28, 3), 4, 3, Normalizer(("u", "v"), (3.0, 1.0), (2.0, 0.5)), step=2,
        origins=origins, patch=(3, 4) if patched else None, calendar=cal,
    )  # fmt: skip
    idx = [5, 0, 2, 2, len(w) - 1, 7]
    items = w.__getitems__(idx)
    got = collate_windows(items)
    want = default_collate([w[i] for i in idx])
    torch.testing.assert_close(default_collate(items), want, rtol=0, atol=0)  # a plain list too
    assert got.keys() == want.keys()
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].is_contiguous(), k
        torch.testing.assert_close(got[k], want[k], rtol=0, atol=0)
    assert not bool(got["x_mask"].all()) or not bool(got["y_mask"].all())  # NaNs were masked


def test_loader_passes_built_batches_through(reader):
    r, _ = reader
    w = GridWindows(r, np.arange(20), 4, 2, Normalizer(("u", "v"), (0.0, 0.0), (1.0, 1.0)))
    batches = list(DataLoader(w, batch_size=6, collate_fn=collate_windows))
    assert [len(b["x"]) for b in batches] == [6, 6, 6, 2]
    assert batches[0]["x"].shape == (6, 4, 2, 6, 7) and batches[3]["start"].tolist() == [18, 19]
    assert collate_windows([w[0], w[1]])["y"].shape == (2, 2, 2, 6, 7)  # lists still collate
