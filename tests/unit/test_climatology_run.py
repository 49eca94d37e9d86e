"""The run's hook for fitted baselines: DataModule.target_series() and runs.build.build_net."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from forecast.data.datamodule import GridDataModule
from forecast.data.sensor_datamodule import SensorDataModule
from forecast.data.synthetic import make_grid, make_sensors
from forecast.errors import DataError
from forecast.models.baselines import Climatology, Persistence
from forecast.runs.build import build_net
from forecast.training.gradient_flow import gradient_flow
from forecast.training.task import ForecastTask

CONTEXT, HORIZON = 4, 3


@dataclass
class Mem:
    """An in-memory source (reads go through xarray)."""

    ds: xr.Dataset
    path: str = "<memory>"

    def open(self) -> xr.Dataset:
        return self.ds


@pytest.fixture(scope="module")
def grid() -> xr.Dataset:
    return make_grid(n_times=80, n_lat=6, n_lon=7, seed=2)  # 20 days, 6-hourly, January


def _grid_dm(grid: xr.Dataset, **kw) -> GridDataModule:
    return GridDataModule(Mem(grid), ["field"], CONTEXT, HORIZON, batch_size=4, **kw)


def _sensor_dm(grid: xr.Dataset) -> SensorDataModule:
    sensors = make_sensors(grid, n_sensors=4, noise=0.1, missing=0.1, seed=3)
    return SensorDataModule(
        Mem(sensors), ["field", "gradient"], CONTEXT, HORIZON, targets=["field"], batch_size=4
    )


def _assert_windows_match(dm, values: np.ndarray) -> None:
    """Every observed target of some test windows equals the series at its row."""
    test = dm.datasets["test"]
    for i in (0, len(test) // 2, len(test) - 1):
        item = test[i]
        rows = int(item["start"]) + CONTEXT + np.arange(HORIZON)
        mask = item["y_mask"].numpy()
        np.testing.assert_allclose(values[rows][mask], item["y"].numpy()[mask], rtol=1e-5)
        assert np.isnan(values[rows][~mask]).all()  # filled targets are NaN in the series


def test_grid_target_series_is_the_normalised_store_on_the_window_rows(grid):
    dm = _grid_dm(grid, crop={"lat": [1, 5]})
    with pytest.raises(RuntimeError, match="setup"):
        dm.target_series()
    dm.setup("fit")
    series = dm.target_series()
    assert series.values.shape == (80, 1, 4, 7)
    np.testing.assert_array_equal(series.times, grid["time"].values)
    assert series.train == dm.bounds()["train"] and series.step == 1
    raw = grid["field"].values[:, None, 1:5]
    np.testing.assert_allclose(series.values, dm.normalizer.transform(raw), rtol=1e-5)
    lo, hi = series.train
    assert abs(float(series.values[lo:hi].mean())) < 1e-4  # z-scored on the training rows
    _assert_windows_match(dm, series.values)


def test_sensor_target_series_holds_only_the_targets(grid):
    dm = _sensor_dm(grid)
    dm.setup("fit")
    series = dm.target_series()
    assert series.values.shape == (80, 4, 1)
    assert np.isnan(series.values).any()  # missing readings stay missing
    _assert_windows_match(dm, series.values)


def test_target_series_refuses_over_budget_and_patches(grid):
    dm = _grid_dm(grid, memory_budget_mb=0.001)  # the series takes 80*6*7*4 B = 0.013 MB
    dm.setup("fit")
    with pytest.raises(DataError, match="memory_budget_mb=0.001"):
        dm.target_series()
    dm = _grid_dm(grid, patch=[3, 7])
    dm.setup("fit")
    with pytest.raises(DataError, match="patch"):
        dm.target_series()


def test_build_net_fits_climatology_on_the_training_rows_only(grid):
    dm = _grid_dm(grid)
    spec = dm.describe()
    net, kwargs = build_net(partial(Climatology), spec, dm)
    assert isinstance(net, Climatology) and kwargs == {"context": CONTEXT, "horizon": HORIZON}
    series = dm.target_series()
    lo, hi = series.train
    hours = pd.DatetimeIndex(series.times).hour.to_numpy()
    x = torch.zeros(1, CONTEXT, *series.values.shape[1:])
    start = hi  # a window in validation: the targets lie outside the training rows
    pred = net(x, torch.tensor([start]))[0].numpy()
    for k in range(HORIZON):
        row = start + CONTEXT + k
        same = lo + np.flatnonzero(hours[lo:hi] == hours[row])  # all January: key = hour
        np.testing.assert_allclose(pred[k], series.values[same].mean(0), rtol=1e-4, atol=1e-5)
        assert not np.allclose(pred[k], series.values[row])  # not the truth itself
    assert net.target_index.numel() == 0


def test_build_net_constructs_plain_nets_without_touching_the_data(grid):
    dm = _grid_dm(grid)
    net, kwargs = build_net(partial(Persistence), dm.describe(), dm)
    assert isinstance(net, Persistence) and set(kwargs) == {"horizon", "grid"}
    assert not dm.datasets  # no setup needed for a net built from the spec alone


def test_sensor_climatology_gives_the_task_its_persistence_and_zero_gradients(grid):
    dm = _sensor_dm(grid)
    net, _ = build_net(partial(Climatology), dm.describe(), dm)
    assert net.target_index.tolist() == [0]  # 'field' is input 0: persistence is scored
    task = ForecastTask(net, partial(torch.optim.SGD, lr=0.0))
    batch = next(iter(dm.test_dataloader()))
    assert task.predict_batch(batch).shape == batch["y"].shape
    forward = lambda x: task.predict_batch({**batch, "x": x})  # noqa: E731
    # the forecast ignores x: every input gradient is 0
    flow = gradient_flow(task.net, batch["x"], batch["y"], batch.get("y_mask"), forward=forward)
    assert flow["what"] == "input" and float(flow["norm"].abs().max()) == 0.0
