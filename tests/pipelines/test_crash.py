"""SIGKILL in the middle of training leaves every store usable, and the next run succeeds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch
import xarray as xr

from forecast.data.synthetic import make_grid

ROOT = Path(__file__).resolve().parents[2]
ARGS = [
    "data.source.n_times=240",
    "data.source.n_lat=16",
    "data.source.n_lon=16",
    "data.batch_size=4",
    "trainer.max_epochs=50",
    # short epochs: the kill lands in training a second after the first checkpoint, and the run
    # after it (one epoch) tests, registers and backtests on a few batches
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "registry.n_origins=2",
    "trainer.enable_progress_bar=false",
]


def _train(tmp_path: Path, uri: str, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "FORECAST_ROOT": str(tmp_path), "MLFLOW_TRACKING_URI": uri}
    return subprocess.Popen(
        [sys.executable, "-m", "pipelines.train", *ARGS, *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_sigkill_during_training_leaves_last_good_state(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    proc = _train(tmp_path, uri)
    deadline = time.monotonic() + 300
    last: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        last = list((tmp_path / "outputs").glob("runs/*/checkpoints/last.ckpt"))
        if last:
            break
        time.sleep(0.5)
    assert last, "no checkpoint appeared before the deadline"
    time.sleep(1.0)  # let it move on into the next epoch before the kill
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    # the data store is complete and identical to a fresh generation
    store = tmp_path / "data" / "synthetic" / "grid.zarr"
    got = xr.open_zarr(store, consolidated=False)["field"].values
    want = make_grid(n_times=240, n_lat=16, n_lon=16)["field"].values
    np.testing.assert_array_equal(got, want)
    # the last checkpoint loads without unpickling arbitrary objects
    state = torch.load(last[0], map_location="cpu", weights_only=True)
    assert state["state_dict"]
    # the tracking store still answers and a new run completes
    rerun = _train(tmp_path, uri, "trainer.max_epochs=1", "trainer.limit_train_batches=3")
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err[-3000:]
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("forecast-synthetic")
    statuses = sorted(r.info.status for r in client.search_runs([exp.experiment_id]))
    assert "FINISHED" in statuses and len(statuses) == 2
