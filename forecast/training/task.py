"""One LightningModule for every net: loss, optimiser, metrics per split and per lead time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning.pytorch as L
import torch
from torch import Tensor, nn

from forecast.evaluation.skill import LeadTimeSkill
from forecast.models.baselines import persistence

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


def masked_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean squared error over finite targets only: NaN targets are never trained on as zeros."""
    valid = torch.isfinite(target)
    if not bool(valid.any()):
        raise ValueError("every target value in the batch is missing (NaN); nothing to train on")
    diff = torch.where(valid, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    return diff.pow(2).sum() / valid.sum()


class ForecastTask(L.LightningModule):
    """Train a forecaster ``net: x (B, T, ...) -> (B, horizon, ...)`` on batches ``{"x", "y"}``.

    Args:
        net: the network.
        optimizer: a partial optimiser taking the parameters.
        scheduler: an optional partial LR scheduler taking the optimiser.
        monitor: the metric the run is judged by (e.g. ``val/rmse``).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        monitor: str = "val/rmse",
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.monitor = monitor
        self.horizon: int = int(getattr(net, "horizon", 1))
        self.skill = nn.ModuleDict(
            {stage: LeadTimeSkill(self.horizon) for stage in ("val", "test")}
        )

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, T, ...) -> (B, horizon, ...)."""
        return self.net(x)

    def _step(self, batch: dict[str, Tensor], stage: str) -> Tensor:
        x, y = batch["x"], batch["y"]
        pred = self(x)
        loss = masked_mse(pred, y)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "train", batch_size=len(x))
        if stage != "train":
            self.skill[stage].update(pred.detach(), persistence(x, self.horizon), y)
        return loss

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One optimisation step on the MSE."""
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate validation errors."""
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate held-out errors."""
        self._step(batch, "test")

    def _log_skill(self, stage: str) -> None:
        result = self.skill[stage].compute()
        mse, ref, skill = result["mse"], result["ref_mse"], result["skill"]
        metrics = {
            f"{stage}/mse": mse.mean(),
            f"{stage}/rmse": mse.mean().sqrt(),
            f"{stage}/persistence_mse": ref.mean(),
            f"{stage}/skill": 1 - mse.mean() / ref.mean().clamp(min=1e-12),
        }
        if stage == "test":
            for k in range(self.horizon):
                metrics[f"{stage}/mse_lead{k + 1}"] = mse[k]
                metrics[f"{stage}/persistence_mse_lead{k + 1}"] = ref[k]
                metrics[f"{stage}/skill_lead{k + 1}"] = skill[k]
        self.log_dict({k: v.float() for k, v in metrics.items()}, prog_bar=stage == "val")
        self.skill[stage].reset()

    def on_validation_epoch_end(self) -> None:
        """Log validation metrics over the whole split."""
        self._log_skill("val")

    def on_test_epoch_end(self) -> None:
        """Log held-out metrics per lead time."""
        self._log_skill("test")

    def configure_optimizers(self) -> Any:
        """Build the optimiser (and scheduler) from the configured partials."""
        opt = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return opt
        return {
            "optimizer": opt,
            "lr_scheduler": {
                "scheduler": self.scheduler_factory(optimizer=opt),
                "monitor": self.monitor,
            },
        }
