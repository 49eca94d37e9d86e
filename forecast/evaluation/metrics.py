"""Per-lead-time metrics of a split as one torchmetrics ``MetricCollection``: errors, SSIM, events.

Tensors are ``(B, horizon, ...)``; every metric honours a bool mask (True = observed) and ignores
non-finite targets. Errors (MSE, MAE, RMSE, PSNR, persistence, skill) share one accumulation
(:class:`~forecast.evaluation.errors.LeadErrors`). Thresholds for CSI/POD/FAR are in the units the
task sees (normalised space unless the data layer says otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torchmetrics import Metric, MetricCollection
from torchmetrics.functional.image import structural_similarity_index_measure

from forecast.evaluation.errors import LeadErrors
from forecast.training.losses import observed


class ContingencyScores(Metric):
    """Hits, misses and false alarms per threshold and lead; CSI, POD and FAR from them.

    An event is ``value >= threshold``. CSI = H / (H + M + F), POD = H / (H + M),
    FAR = F / (H + F); a score whose denominator is zero is NaN (undefined, not perfect).

    Args:
        thresholds: event thresholds.
        horizon: number of lead times.
    """

    full_state_update = False
    hits: Tensor
    misses: Tensor
    false_alarms: Tensor

    def __init__(self, thresholds: Sequence[float], horizon: int) -> None:
        super().__init__()
        self.thresholds = [float(t) for t in thresholds]
        shape = (len(self.thresholds), horizon)
        for name in ("hits", "misses", "false_alarms"):
            self.add_state(name, torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """pred, target, mask: (B, horizon, ...)."""
        valid = observed(target, mask)
        dims = [0, *range(2, target.dim())]
        for i, thr in enumerate(self.thresholds):
            p = (pred >= thr) & valid
            o = (torch.nan_to_num(target, nan=-torch.inf) >= thr) & valid
            self.hits[i] += (p & o).sum(dim=dims).double()
            self.misses[i] += (~p & o).sum(dim=dims).double()
            self.false_alarms[i] += (p & ~o & valid).sum(dim=dims).double()

    def compute(self) -> dict[str, Tensor]:
        """``{csi,pod,far}_t{thr}`` lead-averaged and ``..._lead{k}`` per lead."""
        h, m, f = self.hits, self.misses, self.false_alarms
        nan = torch.tensor(float("nan"), dtype=h.dtype, device=h.device)

        def ratio(num: Tensor, den: Tensor) -> Tensor:
            return torch.where(den > 0, num / den.clamp(min=1), nan)

        scores = {"csi": ratio(h, h + m + f), "pod": ratio(h, h + m), "far": ratio(f, h + f)}
        out: dict[str, Tensor] = {}
        for name, table in scores.items():  # (n_thresholds, horizon)
            for i, thr in enumerate(self.thresholds):
                for k in range(table.shape[1]):
                    out[f"{name}_t{thr:g}_lead{k + 1}"] = table[i, k].float()
                out[f"{name}_t{thr:g}"] = table[i].float().nanmean()
        return out


class LeadSSIM(Metric):
    """Mean SSIM per lead over every frame of a split; targets (B, horizon, C, H, W).

    A missing pixel takes the prediction's value (no error there): SSIM needs whole frames.

    Args:
        horizon: number of lead times.
        data_range: value range of the data.
    """

    full_state_update = False
    total: Tensor
    frames: Tensor

    def __init__(self, horizon: int, data_range: float) -> None:
        super().__init__()
        self.horizon, self.data_range = horizon, float(data_range)
        self.add_state("total", torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("frames", torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """pred, target, mask: (B, horizon, C, H, W)."""
        if pred.dim() != 5:
            raise ValueError(f"SSIM: expected (B, horizon, C, H, W), got {tuple(pred.shape)}")
        filled = torch.where(observed(target, mask), target, pred)
        for k in range(self.horizon):
            per_frame = structural_similarity_index_measure(
                pred[:, k], filled[:, k], data_range=self.data_range, reduction="none"
            )
            assert isinstance(per_frame, Tensor)  # no full image requested: a (B,) tensor
            self.total[k] += per_frame.double().sum()
            self.frames[k] += per_frame.numel()

    def compute(self) -> dict[str, Tensor]:
        """``ssim`` (mean over leads) and ``ssim_lead{k}``."""
        per_lead = (self.total / self.frames.clamp(min=1)).float()
        out = {f"ssim_lead{k + 1}": per_lead[k] for k in range(self.horizon)}
        out["ssim"] = per_lead.mean()
        return out


def lead_time_metrics(
    horizon: int,
    channels: int,
    gridded: bool = False,
    thresholds: Sequence[float] = (),
    data_range: float = 8.0,
    lat_weights: Tensor | None = None,
    scale: Sequence[float] | None = None,
    names: Sequence[str] = (),
) -> MetricCollection:
    """Every per-lead metric of a split; clone it with ``prefix="val/"`` etc. per stage.

    Update with ``(pred, target, mask=None, ref=None)``; ``ref`` is the reference forecast
    (persistence) for skill.

    Args:
        horizon: number of lead times.
        channels: target channels per step.
        gridded: (B, horizon, C, H, W) targets: SSIM, PSNR and latitude weights apply.
        thresholds: CSI/POD/FAR event thresholds (empty: none).
        data_range: value range for SSIM/PSNR; the default 8 spans +-4 standard deviations of
            z-scored data.
        lat_weights: (H,) latitude weights for gridded targets (see ``latitude_weights``).
        scale: per-channel factor to physical units (the fitted normaliser's scale).
        names: channel names (physical metrics per channel when there are several).
    """
    metrics: dict[str, Metric | MetricCollection] = {
        "errors": LeadErrors(
            horizon, channels, 2 if gridded else -1, lat_weights if gridded else None, scale,
            names, data_range if gridded else None,
        ),
    }  # fmt: skip
    if gridded:
        metrics["ssim"] = LeadSSIM(horizon, data_range)
    if thresholds:
        metrics["events"] = ContingencyScores(thresholds, horizon)
    return MetricCollection(metrics, compute_groups=False)
