"""Reader, normaliser and adapters: lazy equals in-memory, train-only statistics, masks."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.data.calendar import calendar_features
from forecast.data.datasets import GridWindows
from forecast.data.normalize import Normalizer
from forecast.data.reader import FrameReader
from forecast.data.sources import StoreSource
from forecast.errors import DataError


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(1)
    a = rng.normal(10, 3, (30, 2, 5, 6)).astype("f4")
    a[4, 0, 1, 2] = np.nan
    ds = xr.Dataset(
        {"u": (("time", "y", "x"), a[:, 0]), "v": (("time", "y", "x"), a[:, 1] * 100)},
        coords={"time": pd.date_range("2021-03-01", periods=30, freq="h")},
    )
    path = tmp_path / "s.zarr"
    ds.chunk({"time": 7}).to_zarr(path, zarr_format=2, consolidated=True)
    return StoreSource(str(path)), ds


@pytest.mark.parametrize("budget", [1e-4, 100.0])
def test_reader_reads_what_xarray_reads(store, budget):
    src, ds = store
    r = FrameReader(src, ["u", "v"], ("y", "x"), crop={"x": (1, 5)}, memory_budget_mb=budget)
    assert r.in_memory == (budget > 1)
    got = r.read(slice(3, 15, 2), (slice(0, 3), slice(1, 3)))
    want = np.stack([ds[v].values[3:15:2, 0:3, 2:4] for v in ("u", "v")], axis=1)
    np.testing.assert_array_equal(got, want)
    assert got.dtype == np.float32


def test_lazy_reader_pickles_without_handle_and_reopens(store):
    src, ds = store
    r = FrameReader(src, ["u"], ("y", "x"), memory_budget_mb=1e-4)
    r.read(slice(0, 2))
    clone = pickle.loads(pickle.dumps(r))
    assert clone._vars == [] and clone._array is None
    np.testing.assert_array_equal(clone.read(slice(5, 6))[:, 0], ds["u"].values[5:6])


@pytest.mark.parametrize("block_mb", [1e-4, None])
def test_scan_statistics_on_train_rows_only(store, block_mb):
    src, ds = store
    r = FrameReader(src, ["u", "v"], ("y", "x"), memory_budget_mb=1e-3)
    scan = r.scan((0, 20), block_mb=block_mb)
    for c, v in enumerate(("u", "v")):
        train = ds[v].values[:20].astype(np.float64)
        assert scan.mean[c] == pytest.approx(np.nanmean(train), rel=1e-6)
        assert scan.std[c] == pytest.approx(np.nanstd(train), rel=1e-6)
        assert scan.vmin[c] == pytest.approx(np.nanmin(train))
        assert scan.vmax[c] == pytest.approx(np.nanmax(train))
    assert scan.missing[4].tolist() == [1, 0] and scan.missing.sum() == 1


def test_normalizer_round_trip_and_save(tmp_path):
    n = Normalizer.from_stats(
        ["a", "b"],
        "zscore",
        np.array([1.0, -2.0]),
        np.array([2.0, 3.0]),
        np.zeros(2),
        np.ones(2),
    )
    assert n.scale == (2.0, 3.0)  # a constant variable is refused (tests/faults)
    x = np.random.default_rng(0).normal(size=(3, 4, 2)).astype("f4")
    np.testing.assert_allclose(n.inverse(n.transform(x, axis=-1), axis=-1), x, atol=1e-6)
    n.save(tmp_path / "n.json")
    assert Normalizer.load(tmp_path / "n.json") == n
    assert n.subset(["b"]).offset == (-2.0,)
    with pytest.raises(DataError, match="'a'"):
        Normalizer.from_stats(
            ["a"], "minmax", np.ones(1), np.ones(1), np.array([np.inf]), np.array([-np.inf])
        )


def test_grid_windows_mask_and_fill(store):
    src, ds = store
    r = FrameReader(src, ["u", "v"], ("y", "x"))
    norm = Normalizer(("u", "v"), (10.0, 0.0), (3.0, 100.0))
    w = GridWindows(r, np.array([2]), context=3, horizon=2, normalizer=norm)
    item = w[0]
    assert item["x"].shape == (3, 2, 5, 6) and item["y"].shape == (2, 2, 5, 6)
    assert not item["x_mask"][2, 0, 1, 2] and item["x"][2, 0, 1, 2] == 0.0
    assert int(item["x_mask"].sum()) == item["x"].numel() - 1 and bool(item["y_mask"].all())
    np.testing.assert_allclose(item["y"][0, 1].numpy(), ds["v"].values[5] / 100.0, rtol=1e-6)
    assert int(item["start"]) == 2


def test_calendar_features():
    t = pd.to_datetime(["2021-01-01 00:00", "2021-01-01 06:00", "2021-07-02 12:00"]).values
    f = calendar_features(t)
    assert f.shape == (3, 4)
    np.testing.assert_allclose(f[:, 0], [0.0, 1.0, 0.0], atol=1e-6)  # sin(2 pi hour / 24)
    np.testing.assert_allclose(f[:, 1], [1.0, 0.0, -1.0], atol=1e-6)
    assert f[2, 3] < -0.99  # early July: half a year from 1 January
    with pytest.raises(DataError, match="datetime"):
        calendar_features(np.arange(3))


@pytest.mark.parametrize("fmt", ["nc", "zarr2", "zarr3"])
def test_direct_read_decodes_packed_int16_like_xarray(tmp_path, fmt):
    """NCEP-style int16 x 0.01 with a fill value: the raw-array path decodes as xarray does."""
    rng = np.random.default_rng(3)
    air = rng.normal(280, 10, (12, 4, 6)).astype("f8")
    air[3, 1, 1] = np.nan
    ds = xr.Dataset(
        {"air": (("time", "latitude", "longitude"), air)},
        coords={"time": pd.date_range("2013-01-01", periods=12, freq="6h")},
    )
    enc = {"air": {"dtype": "int16", "scale_factor": 0.01, "_FillValue": -32767}}
    path = tmp_path / ("a.nc" if fmt == "nc" else "a.zarr")
    if fmt == "nc":
        ds.to_netcdf(path, engine="h5netcdf", encoding=enc)
    else:
        ds.to_zarr(path, zarr_format=int(fmt[-1]), encoding=enc, consolidated=fmt == "zarr2")
    src = StoreSource(str(path), rename={"latitude": "lat", "longitude": "lon"})
    want = src.open()["air"].values
    r = FrameReader(src, ["air"], ("lat", "lon"), crop={"lon": (1, 5)}, memory_budget_mb=1e-5)
    assert all(d is not None for d in r._direct)  # the raw-array path, not xarray's
    got = r.read(slice(3, 10, 3))[:, 0]
    np.testing.assert_allclose(got, want[3:10:3, :, 1:5].astype("f4"), rtol=1e-6)
    assert np.isnan(got[0, 1, 0]) and np.nanmax(np.abs(got - 280)) < 60
    part = r.read(slice(0, 4), (slice(1, 3), slice(0, 2)))[:, 0]
    np.testing.assert_allclose(part, want[0:4, 1:3, 1:3].astype("f4"), rtol=1e-6)


def test_lazy_netcdf_reads_in_worker_processes(tmp_path):
    """h5py handles never cross a fork: each worker reopens the file (pid check)."""
    from torch.utils.data import DataLoader

    rng = np.random.default_rng(4)
    ds = xr.Dataset(
        {"u": (("time", "lat", "lon"), rng.normal(size=(40, 3, 4)).astype("f4"))},
        coords={"time": pd.date_range("2021-01-01", periods=40, freq="h")},
    )
    ds.to_netcdf(tmp_path / "w.nc", engine="h5netcdf")
    r = FrameReader(StoreSource(str(tmp_path / "w.nc")), ["u"], ("lat", "lon"), None, 1e-5)
    r.read(slice(0, 1))  # the parent holds an open handle before the fork
    w = GridWindows(r, np.arange(30), 4, 2, Normalizer(("u",), (0.0,), (1.0,)))
    batches = list(DataLoader(w, batch_size=5, num_workers=2))
    got = np.concatenate([b["y"].numpy() for b in batches])
    want = np.stack([ds["u"].values[s + 4 : s + 6] for s in range(30)])[:, :, None]
    np.testing.assert_array_equal(got, want)
