"""The main job's run function on a small synthetic grid, with and without MLflow tracking."""

from __future__ import annotations

import math
from pathlib import Path

import mlflow
import numpy as np
import pytest
from omegaconf import open_dict

from forecast.errors import ConfigError
from forecast.runs.train import train


def test_train_returns_finite_per_lead_metrics(train_cfg):
    result = train(train_cfg)
    horizon = train_cfg.horizon
    for k in range(1, horizon + 1):
        assert math.isfinite(result.metrics[f"test/mse_lead{k}"])
        assert result.metrics[f"test/persistence_mse_lead{k}"] > 0
    assert math.isfinite(result.score)
    assert result.run_id is None  # logger=none: nothing tracked
    assert Path(result.checkpoint).is_file()


def test_same_config_gives_same_metrics(train_cfg, tmp_path):
    first = train(train_cfg).metrics
    with open_dict(train_cfg):
        train_cfg.paths.output_dir = str(tmp_path / "second")
    second = train(train_cfg).metrics
    assert first == second


def test_tracked_run_has_metrics_config_and_a_loadable_model(train_cfg, compose_cfg, tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    cfg = compose_cfg(["trainer=smoke", "logger=mlflow", f"logger.tracking_uri={uri}"])
    with open_dict(cfg):
        cfg.data = train_cfg.data
        cfg.paths = train_cfg.paths
        cfg.logger.artifact_location = str(tmp_path / "artifacts")
    result = train(cfg)

    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.get_run(result.run_id)
    assert "test/skill" in run.data.metrics and "val/rmse" in run.data.metrics
    assert run.data.params["model.net._target_"] == "forecast.models.conv_lstm.ConvLSTMForecaster"
    assert len(run.data.tags["data_fingerprint"]) == 16
    artifacts = {a.path for a in client.list_artifacts(result.run_id)}
    assert "config.yaml" in artifacts
    plots = {a.path for a in client.list_artifacts(result.run_id, "plots")}
    assert {"plots/skill_per_lead.png", "plots/forecast_vs_truth.png"} <= plots, plots

    mlflow.set_tracking_uri(uri)
    model = mlflow.pyfunc.load_model(result.model_uri)
    ctx = cfg.context_steps
    x = np.full((3, ctx, 1, 16, 16), 280.0, dtype=np.float32)  # raw units, any batch size
    y = model.predict(x)
    assert y.shape == (3, cfg.horizon, 1, 16, 16)
    assert np.isfinite(y).all()


def test_a_reference_that_does_not_fit_the_data_is_refused_before_any_epoch(train_cfg):
    season = {"_target_": "forecast.models.baselines.SeasonalNaive", "_partial_": True}
    with open_dict(train_cfg):  # a season longer than the context cannot be looked up
        train_cfg.references = {"seasonal_naive": season | {"period": train_cfg.context_steps + 1}}
    with pytest.raises(ConfigError, match="references.seasonal_naive: period"):
        train(train_cfg)
    assert not list(Path(train_cfg.paths.output_dir).rglob("*.ckpt"))  # nothing was trained
