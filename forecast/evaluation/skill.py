"""Per-lead-time errors of a model and of persistence, accumulated over a whole split."""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric


class LeadTimeSkill(Metric):
    """MSE of the model and of a reference per lead time, and skill ``1 - MSE_model / MSE_ref``.

    Sums are kept per lead time and reduced across processes by summation, so the result is the
    skill over the whole split (not an average of per-batch ratios).

    Args:
        horizon: number of lead times.
    """

    full_state_update = False

    def __init__(self, horizon: int) -> None:
        super().__init__()
        self.horizon = horizon
        self.add_state("sse_model", torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("sse_ref", torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.zeros(horizon, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: Tensor, ref: Tensor, target: Tensor) -> None:  # type: ignore[override]
        """pred, ref, target: (B, horizon, ...); NaN targets are ignored."""
        valid = torch.isfinite(target)
        t = torch.where(valid, target, torch.zeros_like(target)).double()
        dims = [0, *range(2, target.dim())]
        m = valid.double()
        self.sse_model += (((pred.double() - t) ** 2) * m).sum(dim=dims)
        self.sse_ref += (((ref.double() - t) ** 2) * m).sum(dim=dims)
        self.count += m.sum(dim=dims)

    def compute(self) -> dict[str, Tensor]:  # type: ignore[override]
        """Per-lead ``mse``, ``ref_mse`` and ``skill``, each shaped (horizon,)."""
        n = self.count.clamp(min=1)
        mse, ref = self.sse_model / n, self.sse_ref / n
        return {"mse": mse, "ref_mse": ref, "skill": 1 - mse / ref.clamp(min=1e-12)}
