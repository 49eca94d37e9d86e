"""The offline adapter: held-out and latest windows read through the reader, never a whole store."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch
import xarray as xr

from forecast.data.datamodule import GridDataModule
from forecast.data.normalize import Normalizer
from forecast.data.offline import (
    SequenceFrames,
    forecast_dataset,
    held_out,
    latest_window,
    origin_windows,
    target_std,
)
from forecast.data.sensor_datamodule import SensorDataModule
from forecast.data.sources import StoreSource
from forecast.data.synthetic import make_grid, make_sensors
from forecast.data.zarr_chunks import ChunkedArray
from forecast.errors import DataError
from forecast.evaluation.backtest import backtest, rolling_origins

T, H, W = 120, 6, 7


@dataclass
class Mem:
    ds: xr.Dataset
    path: str = "<memory>"

    def open(self) -> xr.Dataset:
        return self.ds


@pytest.fixture(scope="module")
def grid() -> xr.Dataset:
    return make_grid(n_times=T, n_lat=H, n_lon=W, seed=4)


@pytest.fixture
def store(tmp_path, grid):
    """The grid as uncompressed Zarr, one chunk per time step (a chunk read = a time row)."""
    path = tmp_path / "g.zarr"
    enc = {"field": {"chunks": (1, H, W), "compressors": None}}
    grid.to_zarr(path, zarr_format=3, consolidated=False, encoding=enc)
    return path


@pytest.fixture
def rows_read(monkeypatch):
    """Time rows whose chunk file was read (decoded or read straight into the output)."""
    seen: list[int] = []
    decode, read_rows = ChunkedArray._decode, ChunkedArray._read_rows

    def counting_decode(self, index):
        seen.append(index[0])
        return decode(self, index)

    def counting_rows(self, index, rows, target):
        seen.append(index[0])
        return read_rows(self, index, rows, target)

    monkeypatch.setattr(ChunkedArray, "_decode", counting_decode)
    monkeypatch.setattr(ChunkedArray, "_read_rows", counting_rows)
    return seen


def test_held_out_backtest_reads_only_its_windows_within_a_small_budget(store, grid, rows_read):
    # the store (120 x 6 x 7 float32, 20 KB) is larger than the budget: never loaded whole
    dm = GridDataModule(StoreSource(str(store)), ["field"], 4, 2, memory_budget_mb=0.005)
    data = held_out(dm)
    assert rows_read == [] and data.truth is None and data.channel_axis == 1
    origins = rolling_origins(data.bounds, 4, 2, 3)
    x, y = origin_windows(data.values, origins, 4, 2)
    want = {r for t in origins for r in range(t - 4, t + 2)}
    assert set(rows_read) == want and len(want) < T / 4  # the windows' rows, nothing else
    ref = grid["field"].values
    np.testing.assert_array_equal(x[0, :, 0], ref[origins[0] - 4 : origins[0]])
    np.testing.assert_array_equal(y[-1, :, 0], ref[origins[-1] : origins[-1] + 2])


def test_latest_window_reads_only_the_last_steps_at_the_module_step(store, grid, rows_read):
    crop = {"lat": [1, 5], "lon": [0, 3]}
    dm = GridDataModule(StoreSource(str(store)), ["field"], 3, 2, step=2, crop=crop)
    w = latest_window(dm, ["field"], 3)
    assert sorted(set(rows_read)) == [T - 5, T - 3, T - 1]
    ref = grid["field"].values[T - 5 :: 2, 1:5, 0:3]
    np.testing.assert_array_equal(w.x[:, 0], ref)
    assert w.x.shape == (3, 1, 4, 3) and w.grid and w.space == ("lat", "lon")
    np.testing.assert_array_equal(w.times, grid["time"].values[T - 5 :: 2])
    np.testing.assert_array_equal(w.coords["lat"].values, grid["lat"].values[1:5])
    with pytest.raises(DataError, match="lacks the model's variables"):
        latest_window(dm, ["t2m"], 3)
    with pytest.raises(DataError, match="needs 241"):
        latest_window(dm, ["field"], 121)


def test_sensor_frames_are_time_sensor_feature_and_targets_read_apart(grid):
    sensors = make_sensors(grid, n_sensors=4, noise=0.1, seed=3)
    dm = SensorDataModule(Mem(sensors), ["gradient"], 4, 2, targets=["field"])
    data = held_out(dm)
    assert data.channel_axis == 2 and data.truth is not None
    x, y = origin_windows(data.values, np.array([10, 50]), 4, 2, data.truth)
    assert x.shape == (2, 4, 4, 1) and y.shape == (2, 2, 4, 1)
    np.testing.assert_array_equal(x[1, :, :, 0], sensors["gradient"].values[46:50])
    np.testing.assert_array_equal(y[0, :, :, 0], sensors["field"].values[10:12])
    w = latest_window(dm, ["gradient"], 4)
    assert w.x.shape == (4, 4, 1) and not w.grid and w.attrs["field"] == sensors["field"].attrs


def test_target_std_is_the_spread_of_the_scored_targets(grid):
    v = grid["field"].values[:, None].astype(np.float64)  # (T, 1, H, W), ~280 K
    v[30, 0, 0, 0] = np.nan
    origins = np.array([20, 29, 60])
    std = target_std(v, origins, 3, channel_axis=1)
    scored = np.concatenate([v[t : t + 3] for t in origins])
    assert std.shape == (1, 1, 1, 1)
    assert std.ravel()[0] == pytest.approx(np.nanstd(scored), rel=1e-5)
    flat = np.zeros((40, 2, 3))
    flat[:, 1] = 5.0
    assert np.all(target_std(flat, np.array([5, 9]), 2, channel_axis=1) == 1.0)  # no spread


def test_lazy_frames_score_as_the_loaded_array(store, grid):
    dm = GridDataModule(StoreSource(str(store)), ["field"], 4, 2, memory_budget_mb=0.005)
    data = held_out(dm)
    arr = grid["field"].values[:, None]
    origins = rolling_origins(data.bounds, 4, 2, 5)

    def persistence(x):
        return np.repeat(x[:, -1:], 2, axis=1)

    lazy = backtest(persistence, data.values, origins, 4, 2, 1)
    loaded = backtest(persistence, arr, origins, 4, 2, 1)
    assert lazy.score == pytest.approx(loaded.score, rel=1e-6) and lazy.score > 0
    np.testing.assert_allclose(lazy.rmse_per_origin, loaded.rmse_per_origin, rtol=1e-6)
    ds = lazy.to_dataset()
    assert ds["rmse_per_lead"].dims == ("lead",) and list(ds["lead"].values) == [1, 2]


class Sequences:
    def __init__(self, n, length, ctx):
        self.frames = torch.arange(n * length * 4, dtype=torch.float32).reshape(n, length, 1, 2, 2)
        self.ctx = ctx

    def __getitem__(self, i):
        return {"x": self.frames[i, : self.ctx], "y": self.frames[i, self.ctx :]}


def test_sequence_frames_stay_inside_one_sequence_in_physical_units():
    frames = SequenceFrames(Sequences(3, 5, 3), Normalizer(("p",), (1.0,), (2.0,)), 3, 5)
    assert len(frames) == 15
    got = frames[slice(7, 10)]  # sequence 1, frames 2..4
    want = Sequences(3, 5, 3).frames[1, 2:5].numpy() * 2.0 + 1.0
    np.testing.assert_array_equal(got, want)
    with pytest.raises(DataError, match="across two"):
        frames[slice(8, 11)]


def test_forecast_dataset_has_cf_coords(grid):
    dm = GridDataModule(Mem(grid), ["field"], 4, 2)
    w = latest_window(dm, ["field"], 4)
    out = forecast_dataset(np.zeros((2, 1, H, W), np.float32), w, ["field"], "models:/m@c")
    assert out["field"].dims == ("time", "lead_time", "lat", "lon")
    assert out["time"].values[0] == grid["time"].values[-1]
    step = grid["time"].values[1] - grid["time"].values[0]
    assert out["valid_time"].values[0, 1] == grid["time"].values[-1] + 2 * step
    assert out["field"].attrs["units"] == "K" and out.attrs["source"] == "models:/m@c"
