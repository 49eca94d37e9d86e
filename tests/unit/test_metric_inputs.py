"""What the composition root hands the task's metrics: latitude weights, scales, lead hours."""

from dataclasses import dataclass
from functools import partial

import numpy as np
import pytest
import torch
import xarray as xr

from forecast.data.datamodule import GridDataModule
from forecast.data.sensor_datamodule import SensorDataModule
from forecast.data.spec import step_hours
from forecast.data.synthetic import make_grid, make_sensors
from forecast.models.baselines import Persistence
from forecast.runs.build import metric_options
from forecast.training.losses import LatWeightedMSE
from forecast.training.task import ForecastTask


@dataclass
class Mem:
    ds: xr.Dataset
    path: str = "<memory>"

    def open(self) -> xr.Dataset:
        return self.ds


@pytest.fixture(scope="module")
def grid() -> xr.Dataset:
    return make_grid(n_times=80, n_lat=6, n_lon=7, seed=2)  # 6-hourly


def test_grid_spec_has_latitudes_and_step_hours(grid):
    dm = GridDataModule(Mem(grid), ["field"], 4, 3, batch_size=4, step=2)
    spec = dm.describe()
    assert spec.lat == tuple(float(v) for v in grid["lat"].values)
    assert spec.step_hours == 12.0  # 6-hourly rows, every second row
    patched = GridDataModule(Mem(grid), ["field"], 4, 3, patch=[3, 7]).describe()
    assert patched.lat is None  # a patch's rows differ per sample: no weights


def test_metric_options_weights_and_scales(grid):
    dm = GridDataModule(Mem(grid), ["field"], 4, 3, batch_size=4)
    opts = metric_options(dm, dm.describe())
    w = np.asarray(opts["lat_weights"])
    assert w.shape == (6,) and w.mean() == pytest.approx(1.0)
    assert opts["target_scale"] == list(dm.normalizer.scale)
    sensors = make_sensors(grid, n_sensors=4, noise=0.1, missing=0.1, seed=3)
    sdm = SensorDataModule(Mem(sensors), ["field", "gradient"], 4, 3, targets=["field"])
    s_opts = metric_options(sdm, sdm.describe())
    assert s_opts["lat_weights"] is None  # sensors: unweighted
    assert s_opts["target_names"] == ["field"] and len(s_opts["target_scale"]) == 1


def test_task_logs_weighted_and_physical_metrics_for_persistence(grid):
    dm = GridDataModule(Mem(grid), ["field"], 4, 3, batch_size=4)
    net = Persistence(horizon=3, grid=(6, 7))
    task = ForecastTask(net, partial(torch.optim.SGD, lr=0.0), **metric_options(dm, dm.describe()))
    batch = next(iter(dm.val_dataloader()))
    task._eval_step(batch, "test")
    out = task.metrics["test"].compute()
    # the net *is* persistence: identical errors, skill 0, physical RMSE = scale * normalised
    assert out["test/rmse_lat"] == pytest.approx(float(out["test/persistence_rmse_lat"]))
    assert out["test/skill"] == pytest.approx(0.0, abs=1e-6)
    scale = dm.normalizer.scale[0]
    assert out["test/rmse_phys"] == pytest.approx(scale * float(out["test/rmse"]), rel=1e-5)


def test_step_hours_needs_a_regular_datetime_axis():
    t = np.array(["2020-01-01T00", "2020-01-01T01", "2020-01-01T03"], dtype="datetime64[h]")
    assert step_hours(t, 1) is None
    assert step_hours(t[:2], 3) == 3.0
    assert step_hours(np.arange(5), 1) is None


def test_task_hands_its_latitude_weights_to_a_latitude_weighted_loss(grid):
    dm = GridDataModule(Mem(grid), ["field"], 4, 3, batch_size=4)
    net = Persistence(horizon=3, grid=(6, 7))
    options = metric_options(dm, dm.describe())
    task = ForecastTask(net, partial(torch.optim.SGD, lr=0.0), loss=LatWeightedMSE(), **options)
    assert task.loss_fn.row_weights is not None
    assert task.loss_fn.row_weights.tolist() == pytest.approx(list(options["lat_weights"]))
