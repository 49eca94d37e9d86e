"""Real multi-process DDP (gloo on CPU) through the main job: only rank 0 tracks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL = [
    "data.source.n_times=200",
    "data.source.n_lat=16",
    "data.source.n_lon=16",
    "data.batch_size=4",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=3",
    "trainer.enable_progress_bar=false",
]


@pytest.mark.slow
def test_two_process_ddp_logs_one_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "FORECAST_ROOT": str(tmp_path), "MLFLOW_TRACKING_URI": uri}
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.train", "trainer=ddp", *SMALL],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("MLflow run id:") == 1  # the summary is printed by rank 0 only
    assert proc.stdout.count("overall skill") == 1

    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("forecast-synthetic")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]
    metrics = runs[0].data.metrics
    assert "test/skill" in metrics and "val/rmse" in metrics
    assert len(client.search_logged_models([exp.experiment_id])) == 1
    assert len(client.search_model_versions("name='forecast-synthetic'")) == 1  # rank 0 only
