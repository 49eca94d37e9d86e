"""Per-lead-time metrics accumulated over a split: torchmetrics errors, image scores, contingency.

Tensors are ``(B, horizon, ...)``; every metric honours a bool mask (True = observed) and ignores
non-finite targets. Thresholds for CSI/POD/FAR are in the units the task sees (normalised space
unless the data layer says otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchmetrics import MeanAbsoluteError, MeanSquaredError, Metric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

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

    def __init__(self, thresholds: Sequence[float], horizon: int) -> None:
        super().__init__()
        self.thresholds = [float(t) for t in thresholds]
        shape = (len(self.thresholds), horizon)
        for name in ("hits", "misses", "false_alarms"):
            self.add_state(name, torch.zeros(shape, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:  # type: ignore[override]
        """pred, target, mask: (B, horizon, ...)."""
        valid = observed(target, mask)
        dims = [0, *range(2, target.dim())]
        for i, thr in enumerate(self.thresholds):
            p = (pred >= thr) & valid
            o = (torch.nan_to_num(target, nan=-torch.inf) >= thr) & valid
            self.hits[i] += (p & o).sum(dim=dims).double()
            self.misses[i] += (~p & o).sum(dim=dims).double()
            self.false_alarms[i] += (p & ~o & valid).sum(dim=dims).double()

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        """``csi``, ``pod``, ``far``, each (n_thresholds, horizon) (a scalar if both are 1)."""
        h, m, f = self.hits, self.misses, self.false_alarms
        nan = torch.tensor(float("nan"), dtype=h.dtype, device=h.device)

        def ratio(num: Tensor, den: Tensor) -> Tensor:
            return torch.where(den > 0, num / den.clamp(min=1), nan)

        return {"csi": ratio(h, h + m + f), "pod": ratio(h, h + m), "far": ratio(f, h + f)}


class LeadTimeMetrics(nn.Module):
    """MSE, MAE, RMSE (torchmetrics) per lead; SSIM and PSNR per lead for grids; CSI/POD/FAR.

    Args:
        horizon: number of lead times.
        gridded: add SSIM and PSNR (targets must be (B, horizon, C, H, W)).
        thresholds: CSI/POD/FAR event thresholds (empty: none).
        data_range: value range for SSIM/PSNR; the default 8 spans +-4 standard deviations of
            z-scored data.
    """

    def __init__(
        self,
        horizon: int,
        gridded: bool = False,
        thresholds: Sequence[float] = (),
        data_range: float = 8.0,
    ) -> None:
        super().__init__()
        self.horizon, self.gridded = horizon, gridded
        self.mse = nn.ModuleList(MeanSquaredError() for _ in range(horizon))
        self.mae = nn.ModuleList(MeanAbsoluteError() for _ in range(horizon))
        self.ssim = nn.ModuleList(
            StructuralSimilarityIndexMeasure(data_range=data_range)
            for _ in range(horizon if gridded else 0)
        )
        self.psnr = nn.ModuleList(
            PeakSignalNoiseRatio(data_range=data_range) for _ in range(horizon if gridded else 0)
        )
        self.contingency = ContingencyScores(thresholds, horizon) if thresholds else None

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """pred, target, mask: (B, horizon, ...)."""
        if pred.shape != target.shape or pred.shape[1] != self.horizon:
            raise ValueError(
                f"metrics: expected prediction and target (B, {self.horizon}, ...) of one shape, "
                f"got {tuple(pred.shape)} and {tuple(target.shape)}"
            )
        pred = pred.detach().float()
        target = target.float()
        valid = observed(target, mask)
        for k in range(self.horizon):
            p, t, v = pred[:, k], target[:, k], valid[:, k]
            if bool(v.any()):
                self.mse[k].update(p[v], t[v])
                self.mae[k].update(p[v], t[v])
            if self.gridded:
                if p.dim() != 4:
                    raise ValueError(
                        f"SSIM/PSNR: expected (B, C, H, W) frames, got {tuple(p.shape)}"
                    )
                # image scores need whole frames: a missing pixel takes the prediction (no error)
                filled = torch.where(v, t, p)
                self.ssim[k].update(p, filled)
                self.psnr[k].update(p, filled)
        if self.contingency is not None:
            self.contingency.update(pred, target, valid)

    def compute(self) -> dict[str, Tensor]:
        """Per-lead values ``{name}_lead{k}`` (k from 1) and lead-averaged ``{name}``."""
        out: dict[str, Tensor] = {}
        per_lead: dict[str, list[Tensor]] = {"mse": [], "mae": []}
        for k in range(self.horizon):
            per_lead["mse"].append(self.mse[k].compute() if self.mse[k].update_called else _nan())
            per_lead["mae"].append(self.mae[k].compute() if self.mae[k].update_called else _nan())
        per_lead["rmse"] = [v.sqrt() for v in per_lead["mse"]]
        if self.gridded:
            per_lead["ssim"] = [m.compute() for m in self.ssim]
            per_lead["psnr"] = [m.compute() for m in self.psnr]
        for name, values in per_lead.items():
            for k, v in enumerate(values):
                out[f"{name}_lead{k + 1}"] = v.float()
            out[name] = torch.stack([v.float() for v in values]).nanmean()
        if self.contingency is not None:
            scores = self.contingency.compute()
            shape = (len(self.contingency.thresholds), self.horizon)
            for name, flat in scores.items():
                table = flat.reshape(shape)  # torchmetrics squeezes one-element results
                for i, thr in enumerate(self.contingency.thresholds):
                    for k in range(self.horizon):
                        out[f"{name}_t{thr:g}_lead{k + 1}"] = table[i, k].float()
                    out[f"{name}_t{thr:g}"] = table[i].float().nanmean()
        return out

    def reset(self) -> None:
        """Forget everything accumulated."""
        for group in (self.mse, self.mae, self.ssim, self.psnr):
            for m in group:
                m.reset()
        if self.contingency is not None:
            self.contingency.reset()


def _nan() -> Tensor:
    return torch.tensor(float("nan"))
