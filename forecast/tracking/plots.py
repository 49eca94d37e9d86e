"""Run plots (figures MLflow logs as PNG artifacts): per-lead skill curve, forecast vs truth.

Each function returns the matplotlib ``Figure``; the caller logs it (``log_figure``) or saves it,
then closes it.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")  # headless: runs on servers and in tests without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def skill_curve(metrics: Mapping[str, float], horizon: int) -> Figure:
    """Plot MSE of model and persistence and the skill per lead time.

    Args:
        metrics: test metrics with ``test/mse_lead{k}``, ``test/persistence_mse_lead{k}`` and
            ``test/skill_lead{k}`` for ``k = 1..horizon``.
        horizon: number of lead times.

    Returns:
        The figure.
    """
    leads = np.arange(1, horizon + 1)
    mse = [metrics[f"test/mse_lead{k}"] for k in leads]
    ref = [metrics[f"test/persistence_mse_lead{k}"] for k in leads]
    skill = [metrics[f"test/skill_lead{k}"] for k in leads]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(leads, mse, "o-", label="model")
    a.plot(leads, ref, "s--", label="persistence")
    a.set(xlabel="lead time (steps)", ylabel="MSE (normalised)", title="error per lead")
    a.legend()
    b.plot(leads, skill, "o-")
    b.axhline(0.0, color="grey", lw=0.8)
    b.set(xlabel="lead time (steps)", ylabel="1 - MSE/MSE_persistence", title="skill per lead")
    fig.tight_layout()
    return fig


def forecast_frames(truth: np.ndarray, pred: np.ndarray, variable: str = "") -> Figure:
    """Truth (top row) against forecast (bottom row) for every lead of one gridded sample.

    Args:
        truth: ``(horizon, H, W)`` one variable of one sample.
        pred: ``(horizon, H, W)`` the forecast of the same.
        variable: name for the title.

    Returns:
        The figure.
    """
    if truth.shape != pred.shape or truth.ndim != 3:
        raise ValueError(
            f"truth and pred must both be (horizon, H, W), got {truth.shape} and {pred.shape}"
        )
    horizon = truth.shape[0]
    lo, hi = float(np.nanmin(truth)), float(np.nanmax(truth))
    fig, axes = plt.subplots(2, horizon, figsize=(1.8 * horizon, 3.8), squeeze=False)
    for k in range(horizon):
        for row, (name, field) in enumerate((("truth", truth), ("forecast", pred))):
            ax = axes[row, k]
            ax.imshow(field[k], vmin=lo, vmax=hi, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name} +{k + 1}", fontsize=8)
    fig.suptitle(f"forecast vs truth {variable}".strip())
    fig.tight_layout()
    return fig
