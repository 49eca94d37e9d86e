"""Each bad input in the issue's list: one DataError naming file, variable and the fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from forecast.data.datamodule import GridDataModule
from forecast.data.sources import StoreSource, open_store
from forecast.errors import DataError, DataNotFoundError


def _grid(n_times: int = 40, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {"temp": (("time", "lat", "lon"), rng.normal(280, 5, (n_times, 4, 5)).astype("f4"))},
        coords={
            "time": pd.date_range("2020-01-01", periods=n_times, freq="6h"),
            "lat": np.linspace(50, 40, 4),
            "lon": np.linspace(0, 10, 5),
        },
    )


def _module(path: Path, **kw) -> GridDataModule:
    args = dict(variables=["temp"], context=4, horizon=2, splits=[0.6, 0.2, 0.2])
    args.update(kw)
    return GridDataModule(StoreSource(str(path)), **args)


def _write(ds: xr.Dataset, tmp_path: Path, name: str = "data.nc") -> Path:
    path = tmp_path / name
    if name.endswith(".zarr"):
        ds.to_zarr(path, zarr_format=3, consolidated=False)
    else:
        ds.to_netcdf(path, engine="h5netcdf")
    return path


def _raises(match: list[str], fn) -> str:
    with pytest.raises(DataError) as e:
        fn()
    msg = str(e.value)
    for m in match:
        assert m in msg, f"{m!r} not in {msg!r}"
    return msg


def test_missing_variable_names_file_and_variable(tmp_path):
    path = _write(_grid(), tmp_path)
    _raises(
        [str(path), "'pressure'", "available", "variables"],
        lambda: _module(path, variables=["pressure"]).describe(),
    )


def test_missing_dimension(tmp_path):
    ds = _grid().isel(lon=0)  # temp(time, lat): no second spatial dim
    path = _write(ds, tmp_path)
    _raises([str(path), "'temp'", "rename"], lambda: _module(path).describe())


def test_missing_time_dimension_after_rename(tmp_path):
    path = _write(_grid().rename(time="valid_time"), tmp_path)
    _raises([str(path), "'temp'", "rename"], lambda: _module(path).describe())
    # the config's mapping fixes it
    dm = GridDataModule(StoreSource(str(path), rename={"valid_time": "time"}), ["temp"], 4, 2)
    assert dm.describe().grid == (4, 5)


def test_unknown_rename_key(tmp_path):
    path = _write(_grid(), tmp_path)
    src = StoreSource(str(path), rename={"latitude_typo": "lat2"})
    _raises([str(path), "latitude_typo", "rename"], src.open)


def test_non_monotonic_timestamps(tmp_path):
    ds = _grid()
    t = ds.time.values.copy()
    t[10], t[11] = t[11], t[10]
    path = _write(ds.assign_coords(time=t), tmp_path)
    _raises([str(path), "'temp'", "not increasing", "sortby"], lambda: _module(path).describe())


def test_duplicate_timestamps(tmp_path):
    ds = _grid()
    t = ds.time.values.copy()
    t[11] = t[10]
    path = _write(ds.assign_coords(time=t), tmp_path)
    _raises([str(path), "'temp'", "duplicate", "drop_duplicates"], lambda: _module(path).describe())


def test_irregular_time_step(tmp_path):
    ds = _grid()
    t = ds.time.values.copy()
    t[20:] += np.timedelta64(1, "h")
    path = _write(ds.assign_coords(time=t), tmp_path)
    _raises([str(path), "'temp'", "irregular", "resample"], lambda: _module(path).describe())


def test_series_shorter_than_window(tmp_path):
    path = _write(_grid(n_times=5), tmp_path)
    _raises([str(path), "'temp'", "5 time steps", "shorter"], lambda: _module(path).describe())


def test_all_nan_window(tmp_path):
    ds = _grid()
    ds["temp"][30:36] = np.nan  # a gap longer than one window (context 4 + horizon 2)
    path = _write(ds, tmp_path)
    dm = _module(path, max_missing=1.0)
    _raises([str(path), "'temp'", "entirely NaN", "max_missing"], dm.setup)
    # below 1 the window is skipped and counted instead
    dm = _module(path, max_missing=0.5)
    dm.setup()
    assert sum(dm.skipped.values()) > 0


def test_non_numeric_variable(tmp_path):
    ds = _grid()
    ds["label"] = (("time", "lat", "lon"), np.full((40, 4, 5), "a", dtype=object).astype(str))
    path = _write(ds, tmp_path)
    _raises(
        [str(path), "'label'", "non-numeric"], lambda: _module(path, variables=["label"]).describe()
    )


def test_corrupt_zarr_chunk(tmp_path):
    ds = _grid().chunk({"time": 10})
    path = _write(ds, tmp_path, "data.zarr")
    chunk = sorted((path / "temp" / "c").rglob("*"))
    victim = [p for p in chunk if p.is_file()][1]
    victim.write_bytes(b"\x00garbage" * 3)
    _raises([str(path), "'temp'", "corrupt", "re-create"], lambda: _module(path).setup())


def test_empty_split(tmp_path):
    path = _write(_grid(), tmp_path)
    _raises(
        [str(path), "split 'test'", "empty"],
        lambda: _module(path, splits=[0.9, 0.08, 0.02]).setup(),
    )


def test_all_windows_of_a_split_too_sparse(tmp_path):
    ds = _grid()
    ds["temp"][32:] = np.nan  # the whole test split is missing
    path = _write(ds, tmp_path)
    _raises([str(path), "split 'test'", "max_missing", "'temp'"], lambda: _module(path).setup())


def test_missing_path_names_config_key(tmp_path):
    with pytest.raises(DataNotFoundError, match="data.source.path"):
        open_store(tmp_path / "nope.zarr")


def test_unreadable_file(tmp_path):
    path = tmp_path / "bad.nc"
    path.write_bytes(b"not a netcdf file")
    _raises([str(path), "NetCDF"], lambda: open_store(path))


def test_nan_coordinate(tmp_path):
    ds = _grid()
    lat = ds.lat.values.copy()
    lat[2] = np.nan
    path = _write(ds.assign_coords(lat=lat), tmp_path)
    _raises([str(path), "'lat'", "NaN"], lambda: _module(path).describe())
