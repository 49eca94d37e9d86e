"""Reference forecasts (climatology, seasonal naive, ...) scored on the run's own test windows.

The task scores the model and persistence together; the other references a preset names are
scored here after training, on the same windows and with the same error sums (latitude weights,
physical units), so one run's table compares the model with every reference. Their metrics are
named like the task's persistence metrics: ``test/{name}_{metric}`` (e.g.
``test/climatology_rmse_lat_phys_lead4``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from forecast.evaluation.errors import LeadErrors

# what a reference's forward may read besides x (climatology reads the window's start row)
EXTRAS = ("start", "calendar", "x_mask")


def score_references(
    nets: Mapping[str, nn.Module],
    windows: Dataset[dict[str, Tensor]],
    batch_size: int,
    horizon: int,
    gridded: bool,
    lat_weights: Sequence[float] | None = None,
    scale: Sequence[float] | None = None,
    names: Sequence[str] = (),
    max_batches: int | None = None,
) -> dict[str, float]:
    """Every reference's errors over the test windows, read once and in order.

    Args:
        nets: reference name -> net (``forward(x, ...) -> (B, horizon, C, H, W)`` or sensors).
        windows: the test split's windows (``{"x", "y", "y_mask"?, "start", ...}``).
        batch_size: windows per batch.
        horizon: forecast steps.
        gridded: (B, horizon, C, H, W) targets (channels on axis 2, latitude weights apply).
        lat_weights: (H,) row weights of gridded targets (``_lat`` metrics), or None.
        scale: per-target-channel factor to physical units (``_phys`` metrics), or None.
        names: target channel names (physical metrics per channel when several).
        max_batches: stop after this many batches (the run's ``limit_test_batches``).

    Returns:
        ``{"test/{name}_{metric}": value}`` for every reference and every error metric.
    """
    if not nets:
        return {}
    channels = len(scale) if scale else 1
    weights = None if lat_weights is None else torch.tensor(lat_weights, dtype=torch.float32)
    errors: dict[str, LeadErrors] = {}
    readers: dict[str, list[str]] = {}
    for name, net in nets.items():
        net.eval()
        errors[name] = LeadErrors(
            horizon, channels, 2 if gridded else -1, weights if gridded else None, scale, names,
            sync_on_compute=False,
        )  # fmt: skip
        params = inspect.signature(net.forward).parameters
        readers[name] = [k for k in EXTRAS if k in params]
    loader = DataLoader(windows, batch_size=batch_size, shuffle=False)  # every rank: all windows
    with torch.no_grad():
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            y, mask = batch["y"].float(), batch.get("y_mask")
            for name, net in nets.items():
                pred = net(batch["x"], **{k: batch[k] for k in readers[name] if k in batch})
                errors[name].update(pred.float(), y, mask)
    out: dict[str, float] = {}
    for name, metric in errors.items():
        for key, value in metric.compute().items():
            if not key.startswith(("persistence_", "skill", "psnr")):
                out[f"test/{name}_{key}"] = float(value)
    return out
