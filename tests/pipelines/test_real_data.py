"""Real data sets through their conf/data presets (slow; skipped when ../shared/data is absent)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import open_dict

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("FORECAST_SHARED_DATA", ROOT.parent / "shared" / "data"))


def _dm(name: str, tmp_path: Path, overrides: list[str]):
    if not SHARED.exists():
        pytest.skip(f"no shared data at {SHARED}")
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"data={name}", "logger=none", *overrides])
    with open_dict(cfg):
        cfg.paths.root_dir = str(ROOT)
        cfg.paths.data_dir = str(tmp_path)
    os.environ.setdefault("FORECAST_SHARED_DATA", str(SHARED))
    return instantiate(cfg.data)


def test_ncep_air_decoded_and_split_by_dates(tmp_path):
    dm = _dm("ncep_air", tmp_path, ["context_steps=8", "horizon=4"])
    spec = dm.describe()
    assert spec.grid == (25, 53) and spec.in_channels == 1  # the full grid, never cropped
    assert dm.bounds() == {"train": (0, 1460), "val": (1460, 2184), "test": (2184, 2920)}
    dm.setup()
    # int16 x 0.01 K decoded: a 2013 mean near the data set's 281 K, a std of several K
    assert 270 < dm.normalizer.offset[0] < 290 and 5 < dm.normalizer.scale[0] < 25
    item = dm.datasets["test"][0]
    assert item["x"].shape == (8, 1, 25, 53) and bool(item["x_mask"].all())
    assert abs(float(item["x"].mean())) < 3
    assert sum(dm.skipped.values()) == 0


def test_etth1_informer_protocol(tmp_path):
    dm = _dm("etth1", tmp_path, ["context_steps=96", "horizon=96"])
    dm.setup()
    assert {k: len(v) for k, v in dm.datasets.items()} == {
        "train": 8640 - 96 - 96 + 1,
        "val": 11520 - (8640 - 96) - 96 - 96 + 1,
        "test": 14400 - (11520 - 96) - 96 - 96 + 1,
    }
    df = pd.read_csv(SHARED / "ett" / "ETTh1.csv")
    cols = ["HUFL", "HULL", "MUFL", "MULL", "LUFL", "LULL", "OT"]
    # float32 values, float64 sums: agreement to float32 precision
    np.testing.assert_allclose(dm.normalizer.offset, df[cols][:8640].mean(), rtol=1e-6)
    np.testing.assert_allclose(dm.normalizer.scale, df[cols][:8640].std(ddof=0), rtol=1e-6)
    item = dm.datasets["test"][0]
    assert int(item["start"]) == 11520 - 96 and item["x"].shape == (96, 1, 7)
    raw = df[cols].values[11520 : 11520 + 96]
    np.testing.assert_allclose(
        dm.normalizer.inverse(item["y"].numpy()[:, 0], axis=-1), raw, rtol=1e-5, atol=1e-5
    )


def test_beijing_stations_masked_not_zero_filled(tmp_path):
    dm = _dm("beijing", tmp_path, ["context_steps=24", "horizon=6"])
    spec = dm.describe()
    assert spec.n_sensors == 12 and spec.out_channels == 1 and spec.in_channels == 11
    dm.setup()
    assert sum(dm.skipped.values()) > 0  # the gappy windows are counted
    ds = dm.source.open()
    nan_rows = np.where(np.isnan(ds["PM2.5"].values).any(axis=1))[0]
    starts = dm.datasets["train"].starts
    i = int(np.searchsorted(starts, nan_rows[0] - 5))
    item = dm.datasets["train"][i]
    s = int(item["start"])
    truth = np.isfinite(ds["PM2.5"].values[s : s + 24])
    np.testing.assert_array_equal(item["x_mask"][:, :, 0].numpy(), truth)
    assert not truth.all() and bool((item["x"][~item["x_mask"]] == 0).all())


def test_moving_mnist_preset(tmp_path):
    dm = _dm("moving_mnist", tmp_path, ["context_steps=10", "horizon=10", "data.n_test=20"])
    dm.setup()
    assert dm.datasets["test"].frames.shape == (20, 20, 64, 64)
    assert (tmp_path / "moving_mnist" / "moving_mnist_test.npz").exists()
