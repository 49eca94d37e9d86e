"""Every conf/data/* composes and instantiates; the synthetic ones give contract-shaped batches."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

from forecast.data.synthetic import validate_batch

CONF = Path(__file__).resolve().parents[2] / "conf"
CONF_DATA = CONF / "data"
SMALL_GRID = {"n_times": 120, "n_lat": 12, "n_lon": 10}


def _data_cfg(name: str, tmp_path: Path, extra: list[str] = ()):
    overrides = [f"data={name}", "logger=none", "context_steps=6", "horizon=3", *extra]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(config_name="train", overrides=overrides)
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.data_dir = str(tmp_path / "data")
    return cfg.data


@pytest.mark.parametrize("name", sorted(p.stem for p in CONF_DATA.glob("*.yaml")))
def test_every_data_config_instantiates(name, tmp_path, monkeypatch):
    monkeypatch.setenv("FORECAST_SHARED_DATA", "/somewhere/shared")
    extra = ["data.source.path=/x.zarr", "data.variables=[t]"] if name == "grid_store" else []
    dm = instantiate(_data_cfg(name, tmp_path, extra))
    assert dm.context == 6 and dm.horizon == 3
    path = str(getattr(dm, "source", dm).path)
    if name in ("ncep_air", "etth1", "beijing", "moving_mnist"):
        assert path.startswith("/somewhere/shared/")  # env override of ../shared/data


def test_synthetic_sensors_batch(tmp_path):
    cfg = _data_cfg("synthetic_sensors", tmp_path)
    cfg.source.grid.update(SMALL_GRID)
    dm = instantiate(cfg, batch_size=3)
    spec = dm.describe()
    assert (spec.n_sensors, spec.in_channels, spec.out_channels) == (8, 2, 1)
    assert spec.calendar_features == 4 and len(spec.sensor_coords) == 8
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    validate_batch(batch, {
        "x": (3, 6, 8, 2), "y": (3, 3, 8, 1), "x_mask": (3, 6, 8, 2), "y_mask": (3, 3, 8, 1),
        "start": (3,), "calendar": (3, 6, 4), "calendar_y": (3, 3, 4),
    })  # fmt: skip
    assert not bool(batch["x_mask"].all())  # the 2% knocked-out readings are flagged
    assert bool((batch["x"][~batch["x_mask"]] == 0).all())


def test_synthetic_paired_batch_and_sensor_cells(tmp_path):
    cfg = _data_cfg("synthetic_paired", tmp_path)
    cfg.source.grid.update(SMALL_GRID)
    dm = instantiate(cfg, batch_size=2)
    spec = dm.describe()
    assert spec.grid == (12, 10) and spec.grid_channels == 1 and len(spec.sensor_cells) == 8
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    validate_batch(batch, {"x": (2, 6, 8, 2), "y": (2, 3, 8, 1), "grid": (2, 6, 1, 12, 10),
                           "grid_mask": (2, 6, 1, 12, 10)})  # fmt: skip
    # sensors sit on their cells: the sensor reading tracks the grid value there
    ds = dm.source.open()
    assert [tuple(c) for c in zip(ds.row.values, ds.col.values, strict=True)] == list(
        spec.sensor_cells
    )
    g = torch.stack([batch["grid"][:, :, 0, r, c] for r, c in spec.sensor_cells], dim=-1)
    x = batch["x"][..., 0]
    ok = batch["x_mask"][..., 0]
    corr = torch.corrcoef(torch.stack([g[ok], x[ok]]))[0, 1]
    assert corr > 0.8


def test_synthetic_grid_lazy_equals_in_memory(tmp_path):
    cfg = _data_cfg("synthetic", tmp_path, [f"data.source.{k}={v}" for k, v in SMALL_GRID.items()])
    eager = instantiate(cfg)
    lazy = instantiate(cfg, memory_budget_mb=0.01)
    eager.setup()
    lazy.setup()
    assert eager.datasets["train"].reader.in_memory and not lazy.datasets["train"].reader.in_memory
    assert eager.normalizer.offset == pytest.approx(lazy.normalizer.offset, rel=1e-6)
    for i in (0, 11):
        a, b = eager.datasets["val"][i], lazy.datasets["val"][i]
        torch.testing.assert_close(a["x"], b["x"])
        torch.testing.assert_close(a["y"], b["y"])


def test_ddp_ranks_read_disjoint_shards(tmp_path):
    """Under DDP Lightning injects a DistributedSampler: each rank gets its own windows."""
    from torch.utils.data import DistributedSampler

    cfg = _data_cfg("synthetic", tmp_path, [f"data.source.{k}={v}" for k, v in SMALL_GRID.items()])
    dm = instantiate(cfg)
    dm.setup()
    ds = dm.datasets["train"]
    shards = [set(DistributedSampler(ds, num_replicas=2, rank=r, shuffle=True, seed=0))
              for r in range(2)]  # fmt: skip
    assert not shards[0] & shards[1] and len(shards[0] | shards[1]) == len(ds)


@pytest.mark.skipif(os.cpu_count() == 1, reason="needs a worker process")
def test_lazy_reader_in_a_worker_process(tmp_path):
    cfg = _data_cfg("synthetic", tmp_path, [f"data.source.{k}={v}" for k, v in SMALL_GRID.items()])
    dm = instantiate(cfg, memory_budget_mb=0.01, num_workers=1, batch_size=4)
    dm.setup()
    batch = next(iter(dm.test_dataloader()))
    ref = dm.datasets["test"][0]
    torch.testing.assert_close(batch["x"][0], ref["x"])


def test_saved_normalizer_is_reused_unchanged(tmp_path):
    from forecast.data.normalize import Normalizer

    cfg = _data_cfg("synthetic_sensors", tmp_path)
    cfg.source.grid.update(SMALL_GRID)
    first = instantiate(cfg)
    first.setup()
    first.input_normalizer.save(tmp_path / "n.json")
    # a later evaluation on other splits must not refit
    again = instantiate(cfg, splits=[0.2, 0.4, 0.4])
    again.use_normalizer(Normalizer.load(tmp_path / "n.json"))
    again.setup()
    assert again.input_normalizer == first.input_normalizer
    assert again.normalizer == first.normalizer
    refit = instantiate(cfg, splits=[0.2, 0.4, 0.4])
    refit.setup()
    assert refit.normalizer != first.normalizer


@pytest.mark.parametrize("name", sorted(p.stem for p in CONF_DATA.glob("*.yaml")))
def test_every_data_config_satisfies_the_data_protocols(name, tmp_path, monkeypatch):
    from forecast.data.protocols import ForecastData, SeriesData, missing_members

    monkeypatch.setenv("FORECAST_SHARED_DATA", "/somewhere/shared")
    extra = ["data.source.path=/x.zarr", "data.variables=[t]"] if name == "grid_store" else []
    dm = instantiate(_data_cfg(name, tmp_path, extra))  # members are looked up, no data read
    assert missing_members(dm, ForecastData) == []
    # every module but Moving MNIST (independent sequences) is one continuous series
    expected = [] if name != "moving_mnist" else ["dataset", "target_series"]
    assert missing_members(dm, SeriesData) == expected


@pytest.mark.parametrize(
    "freq,per_hour,start", [("1h", 1, "2019-03-15"), ("15min", 4, "2016-07-01")]
)
def test_the_ett_config_gives_any_ett_file_the_informer_protocol(freq, per_hour, start, tmp_path):
    """12/4/4 months of 30 days from the file's own start: ETTh rows, x4 on a 15-minute file."""
    n = 14500 * per_hour
    cols = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    rng = np.random.default_rng(0)
    table = pd.DataFrame(rng.normal(size=(n, len(cols))).astype("float32"), columns=cols)
    table.insert(0, "date", pd.date_range(start, periods=n, freq=freq).strftime("%Y-%m-%d %H:%M"))
    path = tmp_path / "ett.csv"
    table.to_csv(path, index=False)
    dm = instantiate(_data_cfg("etth1", tmp_path, [f"data.source.path={path}"]))
    dm.setup("fit")
    rows = {"train": (0, 8640), "val": (8640, 11520), "test": (11520, 14400)}
    assert dm.bounds() == {k: (a * per_hour, b * per_hour) for k, (a, b) in rows.items()}
