"""Squared and absolute errors per lead and channel, accumulated once: every error metric's source.

RMSE, MSE, MAE, PSNR, the persistence errors and the skill score of a split all come from these
sums, so ``rmse`` is always ``sqrt(mean over every valid point of the squared error)``, whatever
the data layout. Optional latitude weights (WeatherBench 2: ``cos(lat)`` normalised to mean 1)
give the ``_lat`` variants; per-channel scales (the fitted normaliser's) give ``_phys`` variants
in physical units.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric

from forecast.training.losses import observed

SUMS = ("sse", "sae", "n")


def latitude_weights(lat: Sequence[float]) -> Tensor:
    """``cos(lat)`` per grid row, normalised to mean 1 (WeatherBench 2's convention).

    Args:
        lat: latitude of each row, degrees.

    Returns:
        (H,) float32 weights.
    """
    w = np.cos(np.deg2rad(np.asarray(lat, dtype=np.float64))).clip(min=0.0)
    if not w.sum() > 0:
        raise ValueError(f"latitude weights: every row is at a pole ({list(lat)})")
    return torch.from_numpy(w / w.mean()).float()


class LeadErrors(Metric):
    """Model (and reference) error sums per (lead, channel), plus every metric derived from them.

    Tensors are (B, horizon, ...) with channels on ``channel_dim``; invalid targets (mask False
    or non-finite) are skipped. Sums are float64 and reduced across processes by summation.

    Args:
        horizon: number of lead times.
        channels: channels kept apart (1: every channel pooled; else the targets' channels).
        channel_dim: the channel axis of (B, horizon, ...) tensors (2 for grids, -1 otherwise).
        lat_weights: (H,) row weights for gridded targets (rows on axis -2), or None.
        scale: per-channel factor from normalised to physical units, or None.
        names: channel names for per-channel physical metrics (several channels only).
        data_range: value range for PSNR (normalised units).
        sync_on_compute: gather the sums across processes in ``compute`` (False for a score that
            one process computes alone, such as rank 0's offline backtest under DDP).
    """

    full_state_update = False
    lat_weights: Tensor | None
    ref_n: Tensor

    def __init__(
        self,
        horizon: int,
        channels: int,
        channel_dim: int = -1,
        lat_weights: Tensor | None = None,
        scale: Sequence[float] | None = None,
        names: Sequence[str] = (),
        data_range: float | None = None,
        sync_on_compute: bool = True,
    ) -> None:
        super().__init__(sync_on_compute=sync_on_compute)
        self.horizon, self.channels, self.channel_dim = horizon, channels, channel_dim
        if scale is not None and len(scale) != channels:
            raise ValueError(f"scale: expected {channels} channel factors, got {len(scale)}")
        self.scale = None if scale is None else [float(s) for s in scale]
        self.names = list(names) if len(names) == channels else [f"c{i}" for i in range(channels)]
        self.data_range = data_range
        self.register_buffer("lat_weights", lat_weights, persistent=False)
        groups = ["", "ref_"] + (["w_", "ref_w_"] if lat_weights is not None else [])
        for group in groups:
            for name in SUMS:
                zeros = torch.zeros(horizon, channels, dtype=torch.float64)
                self.add_state(group + name, zeros, dist_reduce_fx="sum")

    def _per_lead_channel(self, x: Tensor) -> Tensor:
        """(B, horizon, ...) -> (horizon, channels) sums (one column: every channel pooled)."""
        if self.channels == 1:
            return x.flatten(2).sum(dim=(0, 2))[:, None]
        x = x.movedim(self.channel_dim, 2).unsqueeze(-1).flatten(3)  # (B, horizon, C, rest)
        return x.sum(dim=(0, 3))

    def _add(self, group: str, err: Tensor, valid: Tensor, weights: Tensor | None) -> None:
        w = valid.double() if weights is None else valid.double() * weights
        d = err.double() * w
        getattr(self, group + "sse").add_(self._per_lead_channel(d * err.double()))
        getattr(self, group + "sae").add_(self._per_lead_channel(d.abs()))
        getattr(self, group + "n").add_(self._per_lead_channel(w))

    def update(
        self, pred: Tensor, target: Tensor, mask: Tensor | None = None, ref: Tensor | None = None
    ) -> None:
        """pred, target, mask, ref (the reference forecast, e.g. persistence): (B, horizon, ...)."""
        if pred.shape != target.shape or pred.shape[1] != self.horizon:
            raise ValueError(
                f"metrics: expected prediction and target (B, {self.horizon}, ...) of one shape, "
                f"got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        valid = observed(target, mask)
        t = torch.where(valid, target, torch.zeros_like(target)).double()
        w = None if self.lat_weights is None else self.lat_weights.double()[:, None]  # (H, 1)
        for group, forecast in (("", pred), ("ref_", ref)):
            if forecast is None:
                continue
            err = torch.where(valid, forecast.double() - t, torch.zeros_like(t))
            self._add(group, err, valid, None)
            if w is not None:
                self._add(group + "w_", err, valid, w)

    def compute(self) -> dict[str, Tensor]:
        """Lead-pooled ``{name}`` and per-lead ``{name}_lead{k}`` values (k from 1).

        ``mse``, ``mae``, ``rmse`` (and ``psnr`` given ``data_range``); with a reference
        ``persistence_{mse,mae,rmse}`` and ``skill = 1 - mse / persistence_mse`` (NaN where the
        reference error is 0: undefined); ``*_lat`` with latitude weights; ``*_phys`` (one
        channel) or ``*_phys_{name}`` (several) in physical units.
        """
        out: dict[str, Tensor] = {}
        groups = [("", "")] + ([("ref_", "persistence_")] if bool(self.ref_n.sum() > 0) else [])
        for group, label in groups:
            sums = [("", group)]
            if self.lat_weights is not None:
                sums.append(("_lat", group + "w_"))
            for suffix, state in sums:
                sse, sae, n = (getattr(self, state + name) for name in SUMS)
                out |= _errors(f"{label}{{}}{suffix}", sse, sae, n)
                for c, tag in enumerate(self._phys_tags()):
                    s = self.scale[c]  # type: ignore[index]
                    one = slice(c, c + 1)
                    out |= _errors(f"{label}{{}}{suffix}{tag}", sse[:, one] * s**2,
                                   sae[:, one] * s, n[:, one])  # fmt: skip
        for key in [k for k in out if k.startswith("mse") and "_phys" not in k]:
            ref = out.get(f"persistence_{key}")
            if ref is not None:
                nan = torch.full_like(ref, math.nan)
                out[key.replace("mse", "skill", 1)] = torch.where(ref > 0, 1 - out[key] / ref, nan)
            if self.data_range is not None and "_lat" not in key:
                peak = 20 * math.log10(self.data_range)
                out[key.replace("mse", "psnr", 1)] = peak - 10 * torch.log10(out[key])
        return {k: v.float() for k, v in out.items()}

    def _phys_tags(self) -> list[str]:
        if self.scale is None:
            return []
        return ["_phys"] if self.channels == 1 else [f"_phys_{name}" for name in self.names]


def _errors(pattern: str, sse: Tensor, sae: Tensor, n: Tensor) -> dict[str, Tensor]:
    """``mse``/``mae``/``rmse`` pooled over leads and per lead from (horizon, C) sums.

    ``pattern`` holds ``{}`` where the metric name goes; NaN where nothing was counted.
    """
    out: dict[str, Tensor] = {}
    rows = [("", sse.sum(), sae.sum(), n.sum())]
    rows += [(f"_lead{k + 1}", sse[k].sum(), sae[k].sum(), n[k].sum()) for k in range(len(sse))]
    for where, q, a, m in rows:
        nan = torch.tensor(math.nan, dtype=torch.float64, device=q.device)
        mse = q / m if m > 0 else nan
        out[pattern.format("mse") + where] = mse
        out[pattern.format("mae") + where] = a / m if m > 0 else nan
        out[pattern.format("rmse") + where] = mse.sqrt()
    return out
