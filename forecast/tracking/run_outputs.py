"""What a finished training run leaves in MLflow besides metrics: config, checkpoint, plots."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from mlflow.tracking import MlflowClient

from forecast.tracking.plots import forecast_frames, skill_curve
from forecast.training.gradient_flow import plot_gradient_flow


def log_config(client: MlflowClient, run_id: str, config_yaml: str) -> None:
    """Log the resolved config as ``config.yaml`` at the artifact root."""
    client.log_text(run_id, config_yaml, "config.yaml")


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
    flow: dict[str, Any] | None = None,
    step_hours: float | None = None,
    units: str | None = None,
) -> list[str]:
    """Log the per-lead error and skill curves and (gridded data) forecast-vs-truth frames.

    Args:
        client: bound to the tracking store.
        run_id: the run.
        metrics: held-out metrics with per-lead keys (see :func:`plots.skill_curve`).
        horizon: lead times.
        frames: ``(truth, forecast, variable)`` with arrays ``(horizon, H, W)`` in physical
            units, or None.
        flow: gradient flow per lag (:func:`forecast.training.gradient_flow.gradient_flow`).
        step_hours: hours per lead (plots' lead axes in hours), or None.
        units: the target's physical units (axis and colour-bar labels), or None.

    Returns:
        The artifact paths written, under ``plots/``.
    """
    figures: dict[str, Figure] = {}
    if all(f"test/skill_lead{k}" in metrics for k in range(1, horizon + 1)):
        figures["skill_per_lead"] = skill_curve(metrics, horizon, step_hours, units)
    if frames is not None:
        truth, pred, name = frames
        figures["forecast_vs_truth"] = forecast_frames(truth, pred, name, units or "", step_hours)
    if flow is not None:
        figures["gradient_flow"] = plot_gradient_flow(flow)
    written = []
    for name, fig in figures.items():
        written.append(f"plots/{name}.png")
        try:
            client.log_figure(run_id, fig, written[-1], save_kwargs={"dpi": 80})
        finally:
            plt.close(fig)
    return written
