"""Broken artifacts and failed writes: refused in one line, nothing half-written, no code run."""

from __future__ import annotations

import errno

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from benchmarks.fault_artifacts import MARKER, broken_copies, crafted, plain_pickle, save_model
from forecast.errors import ArtifactError, StorageError
from forecast.runs.forecast import write_atomic
from forecast.serving.app import load_served
from forecast.serving.pyfunc import load_weights
from pipelines._cli import describe


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("artifacts")
    return tmp, broken_copies(tmp)


@pytest.mark.parametrize("name", ["truncated weights", "crafted pickle"])
def test_a_broken_model_does_not_load_and_says_why_in_one_line(broken, name):
    tmp, table = broken
    model_dir, words = table[name]
    with pytest.raises(ArtifactError) as e:
        load_served(str(model_dir))
    message = describe(e.value)
    assert words in message and "weights.pt" in message and "\n" not in message
    assert not (tmp / MARKER).exists()  # the crafted pickle ran no code


def test_weights_that_are_not_a_state_dict_are_refused(tmp_path):
    with pytest.raises(ArtifactError, match="not a state dict"):
        load_weights(plain_pickle(tmp_path / "list.pt"))
    with pytest.raises(ArtifactError, match="refused to load"):
        load_weights(crafted(tmp_path / "evil.pt", tmp_path))
    assert not (tmp_path / MARKER).exists()


def test_a_good_model_still_loads(tmp_path):
    model = load_served(str(save_model(tmp_path)))
    y = model.predict(np.zeros((1, 3, 1, 4, 4), np.float32))
    assert y.shape == (1, 2, 1, 4, 4) and np.isfinite(y).all()


def test_a_full_disk_while_writing_a_forecast_leaves_nothing(tmp_path, monkeypatch):
    ds = xr.Dataset(
        {"f": (("time",), np.arange(3.0))}, coords={"time": pd.date_range("2020", periods=3)}
    )

    def fill_then_fail(self, path, *args, **kwargs):
        open(path, "wb").write(b"half a file")  # the disk fills mid-write
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(xr.Dataset, "to_netcdf", fill_then_fail)
    target = tmp_path / "out" / "forecast.nc"
    with pytest.raises(StorageError) as e:
        write_atomic(ds, target)
    assert "No space left on device" in describe(e.value) and str(target) in str(e.value)
    assert list((tmp_path / "out").iterdir()) == []  # no partial file, visible or hidden
