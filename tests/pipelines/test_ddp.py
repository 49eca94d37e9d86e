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
    "registry.min_skill=null",  # one version registered by rank 0, skilful or not
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


def _train(root: Path, *overrides: str) -> tuple[dict, list[float]]:
    """Train in a fresh root; return the last checkpoint's weights and the val/rmse per epoch."""
    import torch

    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {**os.environ, "FORECAST_ROOT": str(root), "MLFLOW_TRACKING_URI": uri}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.train", *overrides],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.search_runs([client.get_experiment_by_name("forecast-synthetic").experiment_id])[0]
    history = [m.value for m in client.get_metric_history(run.info.run_id, "val/rmse")]
    (last,) = root.glob("outputs/runs/*/checkpoints/last.ckpt")
    return torch.load(last, map_location="cpu", weights_only=True)["state_dict"], history


@pytest.mark.slow
@pytest.mark.skip(
    reason="not yet shown passing: its first run failed on its own history-length check (the best "
    "checkpoint is validated once more); the fixed check has not been run (stop 9, issue 10)"
)
def test_two_process_ddp_follows_one_process_at_the_same_global_batch(tmp_path):
    """2 ranks x batch 4 == 1 rank x batch 8: same windows per step (DistributedSampler's
    permutation in both runs), gradients averaged by DDP; equal up to float reduction order.

    Tolerance: 1e-4 relative on every val/rmse of the trajectory and on the final weights.
    """
    common = [
        "trainer=ddp",
        *SMALL[:3],
        "trainer.max_epochs=3",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.enable_progress_bar=false",
        "registry.register=false",
    ]
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    w1, h1 = _train(tmp_path / "one", *common, "trainer.devices=1", "data.batch_size=8")
    w2, h2 = _train(tmp_path / "two", *common, "trainer.devices=2", "data.batch_size=4")
    assert len(h1) == len(h2) >= 3  # one per epoch, then the best checkpoint validated again
    for a, b in zip(h1, h2, strict=True):
        assert abs(a - b) <= 1e-4 * abs(a), (h1, h2)
    assert w1.keys() == w2.keys()
    for k in w1:
        scale = float(w1[k].float().abs().max()) or 1.0
        assert float((w1[k].float() - w2[k].float()).abs().max()) <= 1e-4 * scale, k
    assert h1[-1] < h1[0]  # it trained
