"""Real multi-process DDP (gloo on CPU) through the main job: equivalence; only rank 0 tracks."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

ROOT = Path(__file__).resolve().parents[2]
NAME = "forecast-synthetic"
# 200 steps: 13 validation and 13 test windows, an odd count, so a padded shard would repeat one
COMMON = [
    "trainer=ddp",
    "data.source.n_times=200",
    "data.source.n_lat=16",
    "data.source.n_lon=16",
    "trainer.max_epochs=3",
    "trainer.limit_train_batches=3",
    "trainer.enable_progress_bar=false",
    "registry.min_skill=null",  # no extra validation pass after fit: one val/rmse per epoch
    "registry.promote=false",
]


def _train(root: Path, *overrides: str) -> tuple[subprocess.CompletedProcess, mlflow.MlflowClient]:
    root.mkdir()
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = {**os.environ, "FORECAST_ROOT": str(root), "MLFLOW_TRACKING_URI": uri}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.train", *COMMON, *overrides],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc, mlflow.MlflowClient(tracking_uri=uri)


def _run(client: mlflow.MlflowClient):
    exp = client.get_experiment_by_name(NAME)
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1, [r.info.run_id for r in runs]  # rank 1 never tracks
    return runs[0]


@pytest.mark.slow
def test_two_process_ddp_follows_one_process_at_the_same_global_batch(tmp_path):
    """2 ranks x batch 4 == 1 rank x batch 8, and only rank 0 logs, registers and prints.

    Same windows per step: both runs use trainer=ddp, so both read the DistributedSampler's
    seeded permutation (rank r of 2 takes every other index of it); DDP averages the two ranks'
    mean-loss gradients, which is the mean over the 8 windows (no missing values here), and
    clipping acts on the averaged gradient in both. Validation and test cover their whole 13
    windows, so a padded evaluation shard (one window scored twice) would shift the scores.

    Tolerance: 1e-4 relative on every epoch's val/rmse and on every test metric: the runs differ
    only in float32 summation order (a batch of 8 vs two of 4 and an all-reduce), while one
    window scored twice among 13 would move the RMSE by about (e_window - mse) / (14 mse), ~1e-2
    (measured: val/rmse and test metrics equal to the last digit). Weights: mean difference
    <= 1e-5 and largest <= 1e-3 of each tensor's largest weight. AdamW's first steps are about
    lr * sign(gradient), so a rounding difference in a component whose gradient is ~0 moves it by
    up to ~lr; measured: mean <= 4.3e-8, largest 4.1e-5 (one element of a 0.07-scale kernel).
    """
    import torch

    _, c1 = _train(tmp_path / "one", "trainer.devices=1", "data.batch_size=8",
                   "registry.register=false")  # fmt: skip
    proc, c2 = _train(tmp_path / "two", "trainer.devices=2", "data.batch_size=4")
    r1, r2 = _run(c1), _run(c2)

    assert proc.stdout.count("MLflow run id:") == 1  # the summary is printed by rank 0 only
    assert proc.stdout.count("overall skill") == 1
    assert len(c2.search_logged_models([r2.info.experiment_id])) == 1
    assert len(c2.search_model_versions(f"name='{NAME}'")) == 1  # rank 0 only registers
    assert "sync_dist" not in proc.stderr  # epoch metrics are reduced across ranks, no warning

    h1, h2 = ([m.value for m in c.get_metric_history(r.info.run_id, "val/rmse")]
              for c, r in ((c1, r1), (c2, r2)))  # fmt: skip
    assert len(h1) == len(h2) == 3, (h1, h2)  # one per epoch
    for a, b in zip(h1, h2, strict=True):
        assert abs(a - b) <= 1e-4 * abs(a), (h1, h2)
    assert h1[-1] < h1[0]  # it trained
    t1 = {k: v for k, v in r1.data.metrics.items() if k.startswith("test/")}
    t2 = {k: v for k, v in r2.data.metrics.items() if k.startswith("test/")}
    assert t1.keys() == t2.keys() and "test/rmse" in t1
    for k in t1:
        if math.isnan(t1[k]) and math.isnan(t2[k]):  # e.g. CSI without events: in both runs
            continue
        assert abs(t1[k] - t2[k]) <= 1e-4 * max(abs(t1[k]), 1e-6), (k, t1[k], t2[k])

    w1, w2 = (
        torch.load(next(root.glob("outputs/runs/*/checkpoints/last.ckpt")), map_location="cpu",
                   weights_only=True)["state_dict"]
        for root in (tmp_path / "one", tmp_path / "two")
    )  # fmt: skip
    assert w1.keys() == w2.keys()
    for k in w1:
        scale = float(w1[k].float().abs().max()) or 1.0
        diff = (w1[k].float() - w2[k].float()).abs()
        assert float(diff.mean()) <= 1e-5 * scale and float(diff.max()) <= 1e-3 * scale, k
