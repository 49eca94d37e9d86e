"""Composition root of the main job: config -> data, net, task, trainer, tracking -> result."""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger
from pytorch_lightning.utilities.rank_zero import rank_zero_only

from forecast.data.offline import latest_window
from forecast.data.spec import DataSpec
from forecast.evaluation.references import score_references
from forecast.runs.build import build_net, metric_options
from forecast.runs.preflight import check_tracking
from forecast.runs.promote import promote_on_data
from forecast.runs.sweep import sweep_job
from forecast.runs.validate import validate
from forecast.serving.packaging import log_forecast_model
from forecast.serving.pyfunc import model_metadata, unservable
from forecast.tracking.logger import (
    answers,
    lost_error,
    stop_if_lost,
    tracking_errors,
)
from forecast.tracking.mlflow import absolute_tracking_uri, flatten, git_commit
from forecast.tracking.registry import client_for, register_if_finite
from forecast.tracking.run_inputs import log_data_input, log_invocation, time_step
from forecast.tracking.run_outputs import (
    log_checkpoint,
    log_config,
    log_plots,
)
from forecast.tracking.store import ensure_store, owner_tags
from forecast.training.checkpoints import (
    ChecksumCheckpointIO,
    load_checkpoint_file,
    resume_checkpoint,
)
from forecast.training.gradient_flow import gradient_flow
from forecast.training.trainer_options import trainer_options


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
        rank_zero: False in the other processes of a multi-process run (they track nothing).
        model_name: the registered model's name, or None.
        model_version: the registered version, or None.
        promotion: the champion decision in words, or None.
        step_hours: hours per lead step (leads in hours in the summary), or None.
    """

    score: float
    metrics: dict[str, float]
    horizon: int
    run_id: str | None = None
    tracking_uri: str | None = None
    model_uri: str | None = None
    checkpoint: str | None = None
    rank_zero: bool = True
    model_name: str | None = None
    model_version: str | None = None
    promotion: str | None = None
    step_hours: float | None = None


def _reference_nets(cfg: DictConfig, dm: Any, spec: DataSpec) -> dict[str, torch.nn.Module]:
    """The preset's ``references`` (name -> net partial), built before training.

    A reference that does not fit the data (a season longer than the context) is then a
    one-line error before any epoch, not after the run has trained.
    """
    return {
        str(name): build_net(instantiate(ref), spec, dm, key=f"references.{name}")[0]
        for name, ref in (cfg.get("references") or {}).items()
        if ref is not None  # `references.NAME=null` switches one off
    }


def _references(
    cfg: DictConfig, dm: Any, spec: DataSpec, nets: dict[str, torch.nn.Module]
) -> dict[str, float]:
    """The reference nets scored on the test windows with the model's error sums."""
    options = metric_options(dm, spec)
    limit = cfg.trainer.get("limit_test_batches")
    return score_references(
        nets, dm.datasets["test"], int(dm.batch_size), spec.horizon,
        gridded=spec.grid is not None and spec.n_sensors is None,
        lat_weights=options["lat_weights"], scale=options["target_scale"],
        names=options["target_names"], max_batches=limit if isinstance(limit, int) else None,
    )  # fmt: skip


def _logger(cfg: DictConfig) -> MLFlowLogger | None:
    # only rank 0 tracks: the other processes of a multi-process run never open the store
    if not cfg.get("logger") or rank_zero_only.rank != 0:  # type: ignore[attr-defined]
        return None
    logger_cfg = OmegaConf.to_container(cfg.logger, resolve=True)
    assert isinstance(logger_cfg, dict)
    uri = absolute_tracking_uri(str(logger_cfg["tracking_uri"]))
    logger_cfg["tracking_uri"] = uri
    art = logger_cfg.get("artifact_location")
    if uri.startswith(("http://", "https://")):
        logger_cfg["artifact_location"] = None  # a tracking server stores artifacts itself
    elif art and "://" not in str(art):
        logger_cfg["artifact_location"] = Path(str(art)).resolve().as_uri()
    ensure_store(uri, logger_cfg.get("artifact_location"))  # created once, before any logger
    if not logger_cfg.get("run_name"):  # distinct and readable: preset, start time, process
        start = datetime.now().strftime("%Y%m%d-%H%M%S")
        logger_cfg["run_name"] = f"{cfg.get('preset', 'run')}-{start}-{os.getpid()}"
    job = sweep_job()
    if job is not None:  # one run per sweep job: tagged with the sweep id, nested under its parent
        logger_cfg["tags"] = {**(logger_cfg.get("tags") or {}), **job.tags()}
    return instantiate(logger_cfg)


def _best_state(checkpoint: str | None) -> dict[str, torch.Tensor] | None:
    if not checkpoint or not Path(checkpoint).exists():
        return None
    return load_checkpoint_file(checkpoint)["state_dict"]  # verified, weights_only


def train(cfg: DictConfig) -> TrainResult:
    """Train, evaluate on the held-out split against persistence, and track everything in MLflow.

    Args:
        cfg: the composed ``conf/train.yaml``.

    Returns:
        The run's :class:`TrainResult`.
    """
    validate(cfg)  # before any data is read: one line naming a bad key
    uri = check_tracking(cfg)  # a tracking server must answer before any data is read
    L.seed_everything(cfg.seed, workers=True)
    dm = instantiate(cfg.data)
    spec: DataSpec = dm.describe()
    net_partial = instantiate(cfg.model.net)
    net, spec_kwargs = build_net(net_partial, spec, dm)
    task = instantiate(cfg.model, net=net, **metric_options(dm, spec))
    reference_nets = _reference_nets(cfg, dm, spec)

    logger = _logger(cfg)
    # `callbacks.NAME=null` switches one off
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    options = trainer_options(OmegaConf.to_container(cfg.trainer, resolve=True), task)  # type: ignore[arg-type]
    trainer: L.Trainer = instantiate(
        options, callbacks=callbacks, logger=logger or False, plugins=[ChecksumCheckpointIO()]
    )
    if logger is not None and trainer.is_global_zero:
        params = flatten(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
        params.update({"data.fingerprint": dm.fingerprint(), "git.commit": git_commit()})
        if spec.step_hours is not None:  # metric names keep _lead{k}; this labels k in hours
            params["data.lead_hours"] = [spec.step_hours * k for k in range(1, spec.horizon + 1)]
        logger.log_hyperparams(params)
        logger.experiment.set_tag(logger.run_id, "git_commit", params["git.commit"])
        logger.experiment.set_tag(logger.run_id, "data_fingerprint", params["data.fingerprint"])
        for key, value in owner_tags().items():  # a later job marks this run FAILED if we die
            logger.experiment.set_tag(logger.run_id, key, value)
        log_invocation(logger.experiment, str(logger.run_id), sys.argv)
        log_data_input(logger.experiment, str(logger.run_id), dm, str(cfg.get("preset", "data")))

    init = cfg.get("init_weights")  # fine-tuning starts from another run's checkpoint
    if init and not cfg.get("ckpt_path"):
        task.load_state_dict(_best_state(str(init)) or {})
    # a resume skips a corrupt checkpoint for the newest good one beside it (one log line)
    trainer.fit(task, datamodule=dm, ckpt_path=resume_checkpoint(cfg.get("ckpt_path")))
    saver = trainer.checkpoint_callback
    saver = saver if isinstance(saver, ModelCheckpoint) else None
    ckpt = saver.best_model_path if saver else None
    stop_if_lost(logger, uri, ckpt)  # evidence incomplete: no test, registration, promotion
    state = _best_state(ckpt)
    if state is not None:
        task.load_state_dict(state)
    best = saver.best_model_score if saver else None
    val_score = best if best is not None else trainer.callback_metrics.get(cfg.monitor)
    tested = trainer.test(task, datamodule=dm, verbose=False)[0]
    metrics = {k: float(v) for k, v in tested.items()} | task.lead_metrics
    if trainer.is_global_zero and reference_nets:  # same windows, same error sums
        references = _references(cfg, dm, spec, reference_nets)
        metrics.update(references)
        if logger is not None:
            logger.log_metrics(references)
    if (cfg.get("registry") or {}).get("min_skill") is not None:  # the gate reads the best's skill
        checked = trainer.validate(task, datamodule=dm, verbose=False)[0]
        metrics.update({k: float(v) for k, v in checked.items() if k.startswith("val/")})
    score = float(val_score) if val_score is not None else math.nan
    stop_if_lost(logger, uri, ckpt)

    result = TrainResult(
        score=score,
        metrics=metrics,
        horizon=spec.horizon,
        checkpoint=ckpt,
        rank_zero=trainer.is_global_zero,
        step_hours=spec.step_hours,
    )
    if logger is not None and trainer.is_global_zero:  # only rank 0 logs, registers, promotes
        result.run_id = logger.run_id
        result.tracking_uri = logger.experiment.tracking_uri
        result.model_name = str(cfg.model_name)
        try:
            result.model_uri, result.model_version, result.promotion = _log_model(
                cfg, logger, dm, net, spec, spec_kwargs, {cfg.monitor: score, **metrics}, ckpt
            )
        except tracking_errors() as e:  # the server went away after training: same answer
            if answers(result.tracking_uri):
                raise
            raise lost_error(uri, type(e).__name__, ckpt) from e
    return result


def _log_model(
    cfg: DictConfig,
    logger: MLFlowLogger,
    dm: Any,
    net: torch.nn.Module,
    spec: DataSpec,
    spec_kwargs: dict[str, Any],
    metrics: dict[str, float],
    checkpoint: str | None,
) -> tuple[str | None, str | None, str | None]:
    """Log config, checkpoint, plots and the pyfunc; register it if finite; maybe promote it.

    Returns:
        ``(model_uri or None when the net cannot be served, registered version or None,
        the promotion decision in words or None)``.
    """
    uri, run_id = str(logger.experiment.tracking_uri), str(logger.run_id)
    client = client_for(uri)
    log_config(client, run_id, OmegaConf.to_yaml(cfg, resolve=True))
    log_checkpoint(client, run_id, checkpoint)
    why = unservable(net, spec)  # also: the net needs more than x, so no gradient probe
    frames = _frames(dm, net) if spec.grid and not why else None
    grads = _input_gradients(dm, net) if not why else None
    log_plots(client, run_id, metrics, spec.horizon, frames, grads, spec.step_hours,
              target_units(dm))  # fmt: skip

    net_cfg = OmegaConf.to_container(cfg.model.net, resolve=True)
    assert isinstance(net_cfg, dict)
    target = str(net_cfg.pop("_target_"))
    net_cfg.pop("_partial_", None)
    reg: Any = cfg.get("registry") or {}
    if why:  # tracked, but no pyfunc: a request could not carry what the net reads
        client.set_tag(run_id, "serving/skipped", why)
        return None, None, None
    meta = model_metadata(
        spec,
        max_samples=int(reg.get("max_samples", 64)),
        data_fingerprint=dm.fingerprint(),
        time_step=time_step(dm),
    )
    # the input normaliser covers inputs and targets; the pyfunc picks both subsets by name
    norm = getattr(dm, "input_normalizer", None) or dm.normalizer
    example = _raw_example(dm, norm, meta)
    model_uri, model_id = log_forecast_model(
        uri,
        run_id,
        net,
        target,
        {**{str(k): v for k, v in net_cfg.items()}, **spec_kwargs},
        norm,
        meta,
        example,
    )
    if sweep_job() is not None:  # sweeps never move champion: `pipelines.promote sweep_id=...`
        client.set_tag(run_id, "registry/skipped", "sweep job")
        return model_uri, None, None
    if not reg.get("register", False):
        return model_uri, None, None
    finite = all(bool(torch.isfinite(p).all()) for p in net.parameters())
    # validation metrics only: a held-out score such as CSI may be NaN (no events) legitimately
    checked = {k: v for k, v in metrics.items() if k in (cfg.monitor, "val/loss")}
    min_skill = reg.get("min_skill")
    version = register_if_finite(
        client, cfg.model_name, model_id, run_id, checked, finite,
        skill=metrics.get("val/skill"), min_skill=None if min_skill is None else float(min_skill),
    )  # fmt: skip
    if version is None or not reg.get("promote", False):
        return model_uri, None if version is None else str(version.version), None
    decision = promote_on_data(
        uri, str(cfg.model_name), str(version.version), dm, reg, bool(reg.get("force", False))
    )
    verdict = "promoted to" if decision.promoted else "not promoted to"
    return model_uri, str(version.version), f"{verdict} '{reg.alias}': {decision.reason}"


def _frames(dm: Any, net: torch.nn.Module) -> tuple[np.ndarray, np.ndarray, str]:
    """Truth and forecast of the first target for the first held-out window, in data units."""
    item = dm.datasets["test"][0]
    net.eval()
    with torch.no_grad():
        pred = net(item["x"][None])[0]
    truth, guess = item["y"][:, :1].numpy(), pred[:, :1].numpy()  # (horizon, 1, H, W)
    name = str(list(getattr(dm, "targets", None) or dm.variables)[0])
    norm = getattr(dm, "normalizer", None)
    if norm is not None and name in norm.variables:
        one = norm.subset([name])
        truth, guess = one.inverse(truth, axis=1), one.inverse(guess, axis=1)
    return truth[:, 0], guess[:, 0], name


def target_units(dm: Any) -> str | None:
    """The first target's ``units`` attribute in the data module's dataset, or None."""
    ds = getattr(dm, "dataset", None)
    names = list(getattr(dm, "targets", None) or getattr(dm, "variables", None) or [])
    if ds is None or not names or names[0] not in getattr(ds, "data_vars", {}):
        return None
    units = ds[names[0]].attrs.get("units")
    return None if units is None else str(units)


def _input_gradients(dm: Any, net: torch.nn.Module) -> dict[str, Any]:
    """Gradient flow per context step over the first held-out windows."""
    test = dm.datasets["test"]
    items = [test[i] for i in range(min(4, len(test)))]
    x = torch.stack([it["x"] for it in items])
    y = torch.stack([it["y"] for it in items])
    if "y_mask" in items[0]:  # filled targets are not observations
        y = torch.where(torch.stack([it["y_mask"] for it in items]), y, torch.nan)
    return gradient_flow(net, x, y)


def _raw_example(dm: Any, norm: Any, meta: dict[str, Any]) -> np.ndarray:
    """One raw context window shaped (1, *sample_shape) (whole grid when trained on patches)."""
    inputs = norm.subset(list(meta["variables"]))
    if meta.get("patch"):  # samples are patches; the served model reads the whole grid
        x = latest_window(dm, list(meta["variables"]), int(meta["context"])).x[None]
        mean = inputs.inverse(np.zeros_like(x), axis=int(meta["channel_axis"]))
        return np.where(np.isnan(x), mean, x).astype(np.float32)  # an example has no gaps
    x = dm.datasets["test"][0]["x"].numpy()[None]
    return inputs.inverse(x, axis=int(meta["channel_axis"])).astype(np.float32)
