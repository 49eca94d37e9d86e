"""What a finished training run leaves in MLflow besides metrics: config, checkpoint, plots."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from mlflow.tracking import MlflowClient
from torch import nn

from forecast.tracking.plots import forecast_frames, gradient_flow, skill_curve


def input_gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Norm of the MSE loss gradient w.r.t. each context step of ``x``.

    Args:
        net: the forecaster, ``x -> (B, horizon, ...)``.
        x: ``(B, T, ...)`` normalised context; NaN-free.
        y: matching targets; NaN targets are ignored.

    Returns:
        ``(T,)`` gradient norms, oldest step first.
    """
    x = x.detach().clone().requires_grad_(True)
    was_training = net.training
    net.eval()
    try:
        with torch.enable_grad():
            pred = net(x)
            valid = torch.isfinite(y)
            diff = torch.where(valid, pred - torch.nan_to_num(y), torch.zeros_like(pred))
            loss = diff.pow(2).sum() / valid.sum().clamp(min=1)
            (grad,) = torch.autograd.grad(loss, x)
    finally:
        net.train(was_training)
    return grad.flatten(2).norm(dim=2).mean(dim=0).numpy()  # (T,)


def log_config(client: MlflowClient, run_id: str, config_yaml: str) -> None:
    """Log the resolved config as ``config.yaml`` at the artifact root."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(config_yaml)
        client.log_artifact(run_id, str(path))


def log_checkpoint(client: MlflowClient, run_id: str, checkpoint: str | None) -> bool:
    """Log the best checkpoint under ``checkpoints/``; False when there is none on disk."""
    if not checkpoint or not Path(checkpoint).is_file():
        return False
    client.log_artifact(run_id, checkpoint, artifact_path="checkpoints")
    return True


def log_plots(
    client: MlflowClient,
    run_id: str,
    metrics: Mapping[str, float],
    horizon: int,
    frames: tuple[np.ndarray, np.ndarray, str] | None = None,
    grad_norms: np.ndarray | None = None,
) -> list[str]:
    """Log the per-lead skill curve and (gridded data) forecast-vs-truth frames under ``plots/``.

    Args:
        client: bound to the tracking store.
        run_id: the run.
        metrics: held-out metrics with per-lead keys (see :func:`plots.skill_curve`).
        horizon: lead times.
        frames: ``(truth, forecast, variable)`` with arrays ``(horizon, H, W)``, or None.
        grad_norms: ``(context,)`` loss-gradient norms per input step (:func:`input_gradients`).

    Returns:
        The artifact paths written.
    """
    written = []
    with tempfile.TemporaryDirectory() as tmp:
        if all(f"test/skill_lead{k}" in metrics for k in range(1, horizon + 1)):
            written.append(skill_curve(metrics, horizon, Path(tmp) / "skill_per_lead.png"))
        if frames is not None:
            truth, pred, name = frames
            written.append(forecast_frames(truth, pred, Path(tmp) / "forecast_vs_truth.png", name))
        if grad_norms is not None:
            written.append(gradient_flow(grad_norms, Path(tmp) / "gradient_flow.png"))
        for p in written:
            client.log_artifact(run_id, str(p), artifact_path="plots")
    return [f"plots/{p.name}" for p in written]
