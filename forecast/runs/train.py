"""Composition root of the main job: config -> data, net, task, trainer, tracking -> result."""

from __future__ import annotations

import inspect
import math
import tempfile
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import mlflow
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import MLFlowLogger
from omegaconf import DictConfig, OmegaConf

from forecast.data.spec import DataSpec
from forecast.tracking.mlflow import absolute_tracking_uri, flatten, git_commit


@dataclass
class TrainResult:
    """What a training run produced.

    Args:
        score: the value of ``cfg.monitor`` for the best checkpoint.
        metrics: held-out metrics (``test/...``) and the monitored validation metrics.
        horizon: forecast steps.
        run_id: the MLflow run id, or None without tracking.
        tracking_uri: where the run is stored.
        model_uri: the logged model's URI.
        checkpoint: path of the best checkpoint.
    """

    score: float
    metrics: dict[str, float]
    horizon: int
    run_id: str | None = None
    tracking_uri: str | None = None
    model_uri: str | None = None
    checkpoint: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _net_kwargs(partial: Any, spec: DataSpec) -> dict[str, Any]:
    """DataSpec fields the net's constructor asks for (a net takes only what it needs)."""
    params = inspect.signature(partial.func).parameters
    return {f.name: getattr(spec, f.name) for f in fields(spec) if f.name in params}


def _logger(cfg: DictConfig) -> MLFlowLogger | None:
    if not cfg.get("logger"):
        return None
    logger_cfg = OmegaConf.to_container(cfg.logger, resolve=True)
    assert isinstance(logger_cfg, dict)
    logger_cfg["tracking_uri"] = absolute_tracking_uri(str(logger_cfg["tracking_uri"]))
    art = logger_cfg.get("artifact_location")
    if art and "://" not in str(art):
        logger_cfg["artifact_location"] = Path(str(art)).resolve().as_uri()
    return instantiate(logger_cfg)


def _best_state(checkpoint: str | None) -> dict[str, torch.Tensor] | None:
    if not checkpoint or not Path(checkpoint).exists():
        return None
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def train(cfg: DictConfig) -> TrainResult:
    """Train, evaluate on the held-out split against persistence, and track everything in MLflow.

    Args:
        cfg: the composed ``conf/train.yaml``.

    Returns:
        The run's :class:`TrainResult`.
    """
    L.seed_everything(cfg.seed, workers=True)
    dm = instantiate(cfg.data)
    spec: DataSpec = dm.describe()
    net_partial = instantiate(cfg.model.net)
    spec_kwargs = _net_kwargs(net_partial, spec)
    net = net_partial(**spec_kwargs)
    task = instantiate(cfg.model, net=net)

    logger = _logger(cfg)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values()]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=logger or False)
    if logger is not None:
        params = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
        params.update({"data.fingerprint": dm.fingerprint(), "git.commit": git_commit()})
        logger.log_hyperparams(params)
        logger.experiment.set_tag(logger.run_id, "git_commit", params["git.commit"])
        logger.experiment.set_tag(logger.run_id, "data_fingerprint", params["data.fingerprint"])

    trainer.fit(task, datamodule=dm)
    ckpt = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else None
    state = _best_state(ckpt)
    if state is not None:
        task.load_state_dict(state)
    val_score = trainer.callback_metrics.get(cfg.monitor)
    tested = trainer.test(task, datamodule=dm, verbose=False)[0]
    metrics = {k: float(v) for k, v in tested.items()}
    score = float(val_score) if val_score is not None else math.nan

    result = TrainResult(score=score, metrics=metrics, horizon=spec.horizon, checkpoint=ckpt)
    if logger is not None:
        result.run_id = logger.run_id
        result.tracking_uri = logger._tracking_uri
        result.model_uri = _log_model(cfg, logger, dm, net, net_partial, spec, spec_kwargs)
    return result


def _log_model(
    cfg: DictConfig,
    logger: MLFlowLogger,
    dm: Any,
    net: torch.nn.Module,
    net_partial: Any,
    spec: DataSpec,
    spec_kwargs: dict[str, Any],
) -> str:
    """Log the resolved config, the normaliser and the pyfunc model to the run; return its URI."""
    from mlflow.models import infer_signature

    from forecast.serving import model_code
    from forecast.serving.pyfunc import save_bundle

    client, run_id = logger.experiment, logger.run_id
    net_cfg = OmegaConf.to_container(cfg.model.net, resolve=True)
    assert isinstance(net_cfg, dict)
    target = str(net_cfg.pop("_target_"))
    net_cfg.pop("_partial_", None)
    net_kwargs = {**net_cfg, **spec_kwargs}
    metadata = {
        "context": spec.context,
        "horizon": spec.horizon,
        "variables": list(spec.variables),
        "grid": list(spec.grid) if spec.grid else None,
        "data_fingerprint": dm.fingerprint(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
        client.log_artifact(run_id, str(Path(tmp) / "config.yaml"))
        artifacts = save_bundle(
            Path(tmp) / "bundle", net, target, net_kwargs, dm.normalizer, metadata
        )
        client.log_artifact(run_id, artifacts["normalizer"])
        example = _raw_example(dm)
        net.eval()
        with torch.no_grad():
            z = dm.normalizer.transform(example, axis=2).astype(np.float32)
            out = dm.normalizer.inverse(net(torch.from_numpy(z)).numpy(), axis=2)
        mlflow.set_tracking_uri(logger._tracking_uri)
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=model_code.__file__,
                artifacts=artifacts,
                signature=infer_signature(example, out.astype(np.float32)),
                input_example=example,
                pip_requirements=["forecast"],
            )
    return str(info.model_uri)


def _raw_example(dm: Any) -> np.ndarray:
    """One raw (unnormalised) context window from the test split, shaped (1, context, C, ...)."""
    ds = dm.datasets["test"]
    x = ds[0]["x"].numpy()[None]
    return dm.normalizer.inverse(x, axis=2).astype(np.float32)
