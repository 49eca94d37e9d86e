"""The main job exactly as the README runs it, in a fresh project root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_main_job_tracks_run_config_and_model(tmp_path):
    env = {**os.environ, "FORECAST_ROOT": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.train"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MLflow run id:" in proc.stdout and "skill" in proc.stdout
    assert (tmp_path / "data" / "synthetic" / "grid.zarr").is_dir()

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("forecast-synthetic")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.metrics["test/skill"] > 0  # beats persistence on the held-out range
    assert "config.yaml" in {a.path for a in client.list_artifacts(run.info.run_id)}
    models = client.search_logged_models([exp.experiment_id])
    assert len(models) >= 1
