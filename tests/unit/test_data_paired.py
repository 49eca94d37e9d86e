"""Paired sensors + grid: one time axis, sensor cells, misaligned stores."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.data.sensor_datamodule import PairedDataModule
from forecast.data.synthetic import make_grid, make_sensors
from forecast.errors import DataError


@dataclass
class Mem:
    """An in-memory source (no file behind it: reads go through xarray)."""

    ds: xr.Dataset
    path: str = "<memory>"

    def open(self) -> xr.Dataset:
        return self.ds


def _pair(grid_slice=slice(None), sensor_slice=slice(None)):
    grid = make_grid(n_times=80, n_lat=6, n_lon=7, seed=2)
    sensors = make_sensors(grid, n_sensors=4, noise=0.0, seed=3)
    return Mem(sensors.isel(time=sensor_slice), "s.csv"), Mem(grid.isel(time=grid_slice), "g.zarr")


def _module(sensors, grid, **kw):
    return PairedDataModule(sensors, grid, ["field"], ["field", "gradient"], 5, 2,
                            targets=["field"], splits=[0.6, 0.2, 0.2], **kw)  # fmt: skip


def test_common_time_range_and_cells():
    sensors, grid = _pair(grid_slice=slice(0, 70), sensor_slice=slice(10, 80))
    dm = _module(sensors, grid)
    spec = dm.describe()
    assert dm.bounds()["test"][1] == 60  # rows 10..69 are shared by both
    ds = sensors.open()
    assert list(spec.sensor_cells) == list(zip(ds.row.values, ds.col.values, strict=True))
    dm.setup()
    item = dm.datasets["train"][3]
    s = int(item["start"])  # in the common axis: sensor row s + 10, grid row s + 10
    raw = grid.open()["field"].values[s + 10 : s + 15]
    r, c = spec.sensor_cells[1]
    z = (
        item["grid"][:, 0, r, c].numpy() * dm.grid_normalizer.scale[0]
        + dm.grid_normalizer.offset[0]
    )
    np.testing.assert_allclose(z, raw[:, r, c], rtol=1e-5)
    x = item["x"][:, 1, 0].numpy() * dm.input_normalizer.scale[0] + dm.input_normalizer.offset[0]
    np.testing.assert_allclose(x, z, rtol=1e-4)  # noise-free sensor = grid value at its cell


def test_time_axes_that_do_not_coincide():
    sensors, grid = _pair()
    shifted = grid.ds.assign_coords(time=grid.ds.time.values + np.timedelta64(3, "h"))
    with pytest.raises(DataError, match="do not coincide"):
        _module(sensors, Mem(shifted, "g.zarr")).describe()


def test_sensors_without_coordinates():
    sensors, grid = _pair()
    bare = sensors.ds.drop_vars(["lat", "lon"])
    with pytest.raises(DataError, match="sensor coordinates"):
        _module(Mem(bare, "s.csv"), grid).describe()


def test_calendar_rides_along():
    sensors, grid = _pair()
    dm = _module(sensors, grid, calendar=True)
    dm.setup()
    item = dm.datasets["val"][0]
    t = pd.DatetimeIndex(sensors.ds.time.values[int(item["start"]) :][:5])
    np.testing.assert_allclose(item["calendar"][:, 0], np.sin(2 * np.pi * t.hour / 24), atol=1e-6)


def test_latest_window_of_a_paired_module_ends_where_both_stores_end():
    from forecast.data.offline import latest_window

    sensors, grid = _pair(grid_slice=slice(10, 70))  # the sensors run from row 0 to 79
    dm = _module(sensors, grid)
    w = latest_window(dm, ["field"], 5)
    # the common range is rows 10..69: the window is rows 65..69, times and values alike
    ds = sensors.open()
    np.testing.assert_array_equal(w.times, ds["time"].values[65:70])
    np.testing.assert_allclose(w.x[:, :, 0], ds["field"].values[65:70], rtol=1e-6)
