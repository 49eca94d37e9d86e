"""Batch forecasting and training against a real `mlflow server` (sqlite backend, 127.0.0.1)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow
import numpy as np
import pytest
import xarray as xr

from forecast.serving.server import free_port

ROOT = Path(__file__).resolve().parents[2]
DATA = ["data.source.n_times=240", "data.source.n_lat=16", "data.source.n_lon=16"]
TRAIN = ["trainer=smoke", *DATA, "model.net.hidden_channels=[8]", "registry.min_skill=null"]


def run(module: str, root: Path, *overrides: str, uri: str | None = None):
    env = {**os.environ, "FORECAST_ROOT": str(root)}
    env.pop("MLFLOW_TRACKING_URI", None)
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip


def error_line(proc) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("fc")
    proc = run("pipelines.train", root, *TRAIN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["nc", "zarr"])
def test_forecast_writes_cf_file_from_the_latest_window(trained, fmt):
    proc = run("pipelines.forecast", trained, *DATA, f"format={fmt}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = Path(proc.stdout.strip().split("forecast written: ")[-1])
    assert path.suffix == f".{fmt}" and path.parent == trained / "forecasts"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp left
    ds = xr.open_zarr(path) if fmt == "zarr" else xr.open_dataset(path, engine="h5netcdf")
    assert ds["field"].dims == ("time", "lead_time", "lat", "lon")
    assert ds["field"].shape == (1, 6, 16, 16) and np.isfinite(ds["field"].values).all()
    assert ds["time"].attrs["standard_name"] == "forecast_reference_time"
    assert ds["lead_time"].attrs["standard_name"] == "forecast_period"
    store = xr.open_zarr(trained / "data" / "synthetic" / "grid.zarr")
    assert ds["time"].values[0] == store["time"].values[-1]  # issued from the latest step
    step = store["time"].values[-1] - store["time"].values[-2]
    assert (ds["lead_time"].values == step * np.arange(1, 7)).all()


@pytest.mark.slow
def test_missing_alias_and_unreachable_server_are_one_clear_line(trained):
    line = error_line(run("pipelines.forecast", trained, *DATA, "alias=nope"))
    assert "nope" in line and "champion" in line
    line = error_line(run("pipelines.forecast", trained, *DATA, uri="http://127.0.0.1:9"))
    assert "unreachable" in line and "127.0.0.1:9" in line
    line = error_line(run("pipelines.promote", trained, *DATA, "model_name=other"))
    assert "other" in line


@pytest.mark.slow
def test_promote_job_is_idempotent(trained):
    for _ in range(2):
        proc = run("pipelines.promote", trained, *DATA)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "v1: kept (version 1 already holds 'champion')" in proc.stdout


@pytest.mark.slow
def test_train_and_forecast_against_a_tracking_server(tmp_path):
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{tmp_path}/server.db",
        "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1",
    ]  # fmt: skip
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-2000:]
            try:
                urllib.request.urlopen(f"{uri}/health", timeout=2)
                break
            except OSError:
                assert time.monotonic() < deadline, "tracking server did not start"
                time.sleep(0.5)
        root = tmp_path / "project"
        root.mkdir()
        proc = run("pipelines.train", root, *TRAIN, uri=uri)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert not (root / "mlflow.db").exists()  # nothing went to the embedded store
        client = mlflow.MlflowClient(tracking_uri=uri)
        champion = client.get_model_version_by_alias("forecast-synthetic", "champion")
        run_ = client.get_run(champion.run_id)
        assert run_.info.artifact_uri.startswith("mlflow-artifacts:")
        assert {"config.yaml", "plots", "checkpoints"} <= {
            a.path for a in client.list_artifacts(champion.run_id)
        }
        assert "git_commit" in run_.data.tags and "test/skill_lead1" in run_.data.metrics
        proc = run("pipelines.forecast", root, *DATA, uri=uri)
        assert proc.returncode == 0, proc.stderr[-3000:]
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


@pytest.mark.slow
def test_net_trained_on_patches_is_promoted_and_forecasts_the_whole_grid(tmp_path):
    proc = run("pipelines.train", tmp_path, *TRAIN, "data.patch=[8,8]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    champion = client.get_model_version_by_alias("forecast-synthetic", "champion")
    assert float(champion.tags["backtest_score"]) > 0  # backtested on the whole 16x16 grid
    proc = run("pipelines.forecast", tmp_path, *DATA)
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = Path(proc.stdout.strip().split("forecast written: ")[-1])
    ds = xr.open_dataset(path, engine="h5netcdf")
    assert ds["field"].shape == (1, 6, 16, 16) and np.isfinite(ds["field"].values).all()
