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
from matplotlib.image import AxesImage  # noqa: E402

# the headline error of a run, most specific first (as the end-of-run summary picks it)
HEADLINES = ("rmse_lat_phys", "rmse_phys", "rmse_lat", "mse")


def _lead_axis(horizon: int, step_hours: float | None) -> tuple[np.ndarray, str]:
    leads = np.arange(1, horizon + 1, dtype=float)
    if step_hours:
        return leads * step_hours, "lead time (h)"
    return leads, "lead time (steps)"


def skill_curve(
    metrics: Mapping[str, float],
    horizon: int,
    step_hours: float | None = None,
    units: str | None = None,
) -> Figure:
    """The headline error per lead of the model beside every reference, and the skill.

    The headline is the first of :data:`HEADLINES` the run logged per lead (physical units
    and latitude weights when the run has them); references are every ``test/{name}_{metric}``
    series (persistence, climatology, seasonal naive, ...).

    Args:
        metrics: test metrics with ``test/{metric}_lead{k}``, ``test/{ref}_{metric}_lead{k}``
            and ``test/skill_lead{k}`` for ``k = 1..horizon``.
        horizon: number of lead times.
        step_hours: hours per lead (the axis is in hours), or None (in steps).
        units: physical units of the target, for the ``_phys`` errors' axis label.

    Returns:
        The figure.
    """
    metric = next(m for m in HEADLINES if f"test/{m}_lead1" in metrics)
    suffix = f"_{metric}_lead1"
    refs = sorted(k[5 : -len(suffix)] for k in metrics
                  if k.endswith(suffix) and k != f"test{suffix}")  # fmt: skip
    x, xlabel = _lead_axis(horizon, step_hours)
    style = "-" if horizon > 24 else "o-"
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(x, [metrics[f"test/{metric}_lead{k}"] for k in range(1, horizon + 1)], style,
           label="model")  # fmt: skip
    for ref in refs:
        a.plot(x, [metrics[f"test/{ref}_{metric}_lead{k}"] for k in range(1, horizon + 1)], "--",
               label=ref.replace("_", " "))  # fmt: skip
    unit = (units or "data units") if metric.endswith("_phys") else "normalised"
    a.set(xlabel=xlabel, ylabel=f"{metric} ({unit})", title="error per lead")
    a.legend(fontsize=8)
    b.plot(x, [metrics[f"test/skill_lead{k}"] for k in range(1, horizon + 1)], style)
    b.axhline(0.0, color="grey", lw=0.8)
    b.set(xlabel=xlabel, ylabel="1 - MSE/MSE_persistence", title="skill per lead")
    fig.tight_layout()
    return fig


def forecast_frames(
    truth: np.ndarray,
    pred: np.ndarray,
    variable: str = "",
    units: str = "",
    step_hours: float | None = None,
) -> Figure:
    """Truth (top row) against forecast (bottom row) for every lead of one gridded sample.

    One colour scale for every panel, with its colour bar labelled in ``units``.

    Args:
        truth: ``(horizon, H, W)`` one variable of one sample.
        pred: ``(horizon, H, W)`` the forecast of the same.
        variable: name for the title.
        units: the values' units (colour bar label).
        step_hours: hours per lead (titles ``+6 h``), or None (``+1`` in steps).

    Returns:
        The figure.
    """
    if truth.shape != pred.shape or truth.ndim != 3:
        raise ValueError(
            f"truth and pred must both be (horizon, H, W), got {truth.shape} and {pred.shape}"
        )
    horizon = truth.shape[0]
    lo, hi = float(np.nanmin(truth)), float(np.nanmax(truth))
    fig, axes = plt.subplots(2, horizon, figsize=(1.8 * horizon + 1.2, 3.8), squeeze=False,
                             layout="constrained")  # fmt: skip
    image: AxesImage | None = None
    for k in range(horizon):
        lead = f"+{(k + 1) * step_hours:g} h" if step_hours else f"+{k + 1}"
        for row, (name, field) in enumerate((("truth", truth), ("forecast", pred))):
            ax = axes[row, k]
            image = ax.imshow(field[k], vmin=lo, vmax=hi, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name} {lead}", fontsize=8)
    assert image is not None  # horizon >= 1
    fig.colorbar(image, ax=axes, shrink=0.9, label=units or "data units")
    fig.suptitle(f"forecast vs truth {variable}".strip())
    return fig
