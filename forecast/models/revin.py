"""Per-series instance normalisation over the context, restored on the forecast (RevIN-style).

A forecaster trained on z-scores of one file meets other levels and trends elsewhere; taking out
each window's own level (and scale) before the net and putting it back after keeps the net's
inputs in the range it was trained on (Kim et al. 2022, RevIN; the last-value form is SegRNN's).
"""

from __future__ import annotations

import torch
from torch import Tensor

NORMS = ("none", "last", "mean", "revin")


def instance_stats(z: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    """Shift and scale per series.  z: (N, T) -> ((N, 1), (N, 1)).

    Args:
        z: one context series per row.
        mode: ``"none"``, ``"last"`` (subtract the last value), ``"mean"`` (subtract the
            context mean) or ``"revin"`` (subtract the mean, divide by the standard deviation).

    Returns:
        ``(shift, scale)``; normalise with ``(z - shift) / scale``, restore with
        ``y * scale + shift``.
    """
    ones = torch.ones_like(z[:, :1])
    if mode == "none":
        return torch.zeros_like(ones), ones
    if mode == "last":
        return z[:, -1:], ones
    if mode == "mean":
        return z.mean(dim=1, keepdim=True), ones
    if mode == "revin":
        scale = z.std(dim=1, keepdim=True, unbiased=False).clamp(min=1e-5)
        return z.mean(dim=1, keepdim=True), scale
    raise ValueError(f"instance_norm: expected one of {NORMS}, got {mode!r}")
