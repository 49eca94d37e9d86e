"""One LightningModule for every net: masked loss, manual optimisation, metrics per lead time.

Optimisation is manual (Lightning 2 has no ``truncated_bptt_steps`` and refuses
``gradient_clip_val`` under manual optimisation), so clipping, the non-finite policy and truncated
BPTT live here. bf16 comes from the Trainer's ``precision`` setting, as for any LightningModule.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import pytorch_lightning as L
import torch
from torch import Tensor, nn

from forecast.evaluation.metrics import LeadTimeMetrics
from forecast.evaluation.skill import LeadTimeSkill
from forecast.models.baselines import persistence
from forecast.training.gradients import (
    NonFiniteError,
    check_clip,
    check_policy,
    clip_gradients,
)
from forecast.training.losses import MaskedBCE, MaskedCE, MaskedMSE
from forecast.training.tbptt import check_tbptt, truncated_bptt

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[..., Any]
Schedule = Callable[[int], float]

# batch entries a net receives when its forward names them (besides x)
BATCH_EXTRAS = ("x_mask", "grid", "grid_mask", "calendar", "start")


class ForecastTask(L.LightningModule):
    """Train any net on batches ``{"x", "y", "x_mask"?, "y_mask"?, ...}`` (see the data contract).

    Args:
        net: the network; ``forward(x, ...)`` returns (B, horizon, ...) forecasts, or logits.
        optimizer: partial optimiser taking ``params``.
        scheduler: optional partial LR scheduler taking ``optimizer``; stepped once per epoch
            (with the monitored value for ReduceLROnPlateau).
        monitor: the metric the run is judged by (e.g. ``val/rmse``).
        loss: a masked loss from :mod:`forecast.training.losses` (default MSE).
        clip_mode: None, ``"norm"`` or ``"value"``.
        clip_value: the clipping threshold.
        nonfinite: ``"skip"`` (drop the step, count it in ``train/skipped_steps``) or
            ``"raise"`` (stop with :class:`NonFiniteError`).
        tbptt_k1: chunk length for truncated BPTT (None: full BPTT).
        tbptt_k2: steps of backpropagation per chunk (None: k1).
        teacher_forcing: schedule ``global_step -> ratio`` for nets whose forward takes
            ``targets`` and ``teacher_forcing`` (None: free running).
        thresholds: CSI/POD/FAR event thresholds (in the units the net predicts).
        data_range: value range for SSIM/PSNR on gridded targets (8: +-4 std of z-scores).
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        monitor: str = "val/rmse",
        loss: nn.Module | None = None,
        clip_mode: str | None = "norm",
        clip_value: float = 1.0,
        nonfinite: str = "skip",
        tbptt_k1: int | None = None,
        tbptt_k2: int | None = None,
        teacher_forcing: Schedule | None = None,
        thresholds: Sequence[float] = (),
        data_range: float = 8.0,
    ) -> None:
        super().__init__()
        # plain floats: a ListConfig in hparams would break torch.load(weights_only=True)
        thresholds = [float(t) for t in thresholds]
        self.save_hyperparameters(
            ignore=["net", "optimizer", "scheduler", "loss", "teacher_forcing"]
        )
        self.automatic_optimization = False
        check_clip(clip_mode, clip_value)
        check_policy(nonfinite)
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.monitor = monitor
        self.loss_fn = loss if loss is not None else MaskedMSE()
        self.clip_mode, self.clip_value, self.nonfinite = clip_mode, clip_value, nonfinite
        self.tbptt_k1 = tbptt_k1
        self.tbptt_k2 = check_tbptt(net, tbptt_k1, tbptt_k2) if tbptt_k1 is not None else None
        self.teacher_forcing = teacher_forcing
        self.skipped_steps = 0
        self.classify = isinstance(self.loss_fn, MaskedCE)
        self.horizon: int = int(getattr(net, "horizon", 1))
        self._net_args = set(inspect.signature(net.forward).parameters)
        if teacher_forcing is not None and not {"targets", "teacher_forcing"} <= self._net_args:
            raise ValueError(
                f"teacher_forcing: {type(net).__name__}.forward takes no `targets` and "
                "`teacher_forcing` arguments (it has no autoregressive decoder)"
            )
        gridded = bool(getattr(net, "gridded", False))  # nets on (B, T, C, H, W) say so
        stages = ("val", "test")
        self.skill = nn.ModuleDict({s: LeadTimeSkill(self.horizon) for s in stages})
        self.metrics = nn.ModuleDict(
            {s: LeadTimeMetrics(self.horizon, gridded, thresholds, data_range) for s in stages}
        )

    def forward(self, x: Tensor, **extras: Any) -> Tensor:
        """x: (B, T, ...) -> the net's output (forecasts (B, horizon, ...) or logits)."""
        return self.net(x, **extras)

    def _extras(self, batch: dict[str, Tensor], train: bool) -> dict[str, Any]:
        extras = {k: batch[k] for k in BATCH_EXTRAS if k in batch and k in self._net_args}
        if train and self.teacher_forcing is not None:
            ratio = float(self.teacher_forcing(self.global_step))
            y = batch["y"]
            mask = batch.get("y_mask")
            extras["targets"] = y if mask is None else torch.where(mask, y, torch.zeros_like(y))
            extras["teacher_forcing"] = ratio
            self.log("train/teacher_forcing", ratio, batch_size=len(y))
        return extras

    def predict_batch(self, batch: dict[str, Tensor]) -> Tensor:
        """The net's output for a batch, given the extras its forward names (no teacher forcing)."""
        return self(batch["x"], **self._extras(batch, train=False))

    def _metric_view(self, pred: Tensor) -> Tensor:
        """What the metrics compare: probabilities for a BCE-trained net, else the output."""
        return torch.sigmoid(pred) if isinstance(self.loss_fn, MaskedBCE) else pred

    def _optimise(self, loss: Tensor) -> None:
        """Backward, non-finite check, clipping, gradient-norm logging, optimiser step."""
        opt = self.optimizers()
        assert not isinstance(opt, list)
        if not bool(torch.isfinite(loss)):
            self._non_finite("loss", loss)
            return
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        norm = clip_gradients(self.net.parameters(), self.clip_mode, self.clip_value)
        if not bool(torch.isfinite(norm)):
            opt.zero_grad(set_to_none=True)
            self._non_finite("gradient norm", norm)
            return
        self.log("train/grad_norm", norm.float(), on_step=True, on_epoch=False)
        opt.step()

    def _non_finite(self, what: str, value: Tensor) -> None:
        if self.nonfinite == "raise":
            raise NonFiniteError(
                f"non-finite {what} ({float(value.detach())}) at global step {self.global_step}; "
                "lower the learning rate, clip gradients, or set nonfinite=skip"
            )
        self.skipped_steps += 1
        self.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)

    def _has_params(self) -> bool:
        return any(p.requires_grad for p in self.net.parameters())

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        """One (or, under TBPTT, one per chunk) optimisation step on the masked loss."""
        x, y = batch["x"], batch["y"]
        if self.tbptt_k1 is not None:
            inputs, targets, mask = self._sequence_pairs(batch)
            assert self.tbptt_k2 is not None
            losses = truncated_bptt(
                self.net, inputs, targets, mask, self.tbptt_k1, self.tbptt_k2,
                self.loss_fn, self._optimise,
            )  # fmt: skip
            loss = torch.stack(losses).mean()
        else:
            pred = self(x, **self._extras(batch, train=True))
            loss = self.loss_fn(pred, y, batch.get("y_mask"))
            if self._has_params():
                self._optimise(loss)
        self.log("train/loss", loss.detach(), prog_bar=True, batch_size=len(x))
        return loss.detach()

    def _sequence_pairs(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor | None]:
        """Per-step (inputs, targets, mask) for TBPTT.

        Synced labelling (a cross-entropy task): inputs ``x``, per-step labels ``y``. Otherwise
        one-step-ahead over the whole window: inputs ``[x, y][:-1]``, targets ``[x, y][1:]``.
        """
        x, y = batch["x"], batch["y"]
        if self.classify:
            if y.shape[:2] != x.shape[:2]:
                raise ValueError(
                    "truncated BPTT labelling needs one label per input step, got x "
                    f"{tuple(x.shape)} and labels {tuple(y.shape)}"
                )
            return x, y, batch.get("y_mask")
        if x.shape[2:] != y.shape[2:]:
            raise ValueError(
                "truncated BPTT one-step-ahead training needs targets shaped like inputs, got "
                f"x {tuple(x.shape)} and y {tuple(y.shape)}"
            )
        seq = torch.cat([x, y], dim=1)
        xm, ym = batch.get("x_mask"), batch.get("y_mask")
        mask = None
        if xm is not None or ym is not None:
            xm = torch.ones_like(x, dtype=torch.bool) if xm is None else xm
            ym = torch.ones_like(y, dtype=torch.bool) if ym is None else ym
            mask = torch.cat([xm, ym], dim=1)[:, 1:]
        return seq[:, :-1], seq[:, 1:], mask

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        x, y, mask = batch["x"], batch["y"], batch.get("y_mask")
        pred = self.predict_batch(batch)
        loss = self.loss_fn(pred, y, mask)
        self.log(f"{stage}/loss", loss, batch_size=len(x))
        if self.classify:
            valid = torch.ones_like(y, dtype=torch.bool) if mask is None else mask
            acc = (pred.argmax(-1) == y.long())[valid].float().mean()
            self.log(f"{stage}/accuracy", acc, batch_size=len(x))
            return
        view = self._metric_view(pred.detach()).float()
        self.metrics[stage].update(view, y, mask)
        last = self._persistence(x, y)
        if last is not None:
            target = y if mask is None else torch.where(mask, y, torch.full_like(y, float("nan")))
            self.skill[stage].update(view, last.float(), target)

    def _persistence(self, x: Tensor, y: Tensor) -> Tensor | None:
        """The persistence forecast of the targets, or None when the inputs do not hold them."""
        if x.shape[2:] == y.shape[2:]:
            return persistence(x, self.horizon)
        index = getattr(self.net, "target_index", None)
        if isinstance(index, Tensor) and index.numel() == y.shape[-1]:
            return persistence(x.index_select(-1, index), self.horizon)
        return None

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate validation errors."""
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Accumulate held-out errors."""
        self._eval_step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        if self.classify:
            return
        values = self.metrics[stage].compute()
        self.metrics[stage].reset()
        per_lead = stage == "test"
        metrics = {f"{stage}/{k}": v for k, v in values.items() if per_lead or "_lead" not in k}
        skill = self.skill[stage]
        if bool(skill.count.sum() > 0):
            result = skill.compute()
            mse, ref = result["mse"], result["ref_mse"]
            metrics[f"{stage}/mse"] = mse.mean()
            metrics[f"{stage}/rmse"] = mse.mean().sqrt()
            metrics[f"{stage}/persistence_mse"] = ref.mean()
            metrics[f"{stage}/skill"] = 1 - mse.mean() / ref.mean().clamp(min=1e-12)
            if per_lead:
                for k in range(self.horizon):
                    metrics[f"{stage}/mse_lead{k + 1}"] = mse[k]
                    metrics[f"{stage}/persistence_mse_lead{k + 1}"] = ref[k]
                    metrics[f"{stage}/skill_lead{k + 1}"] = result["skill"][k]
        skill.reset()
        rmse = metrics.pop(f"{stage}/rmse")
        self.log_dict({k: v.float() for k, v in metrics.items()})
        self.log(f"{stage}/rmse", rmse.float(), prog_bar=stage == "val")

    def on_validation_epoch_end(self) -> None:
        """Log validation metrics over the whole split."""
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        """Log held-out metrics per lead time."""
        self._log_epoch("test")

    def on_train_epoch_end(self) -> None:
        """Step the LR scheduler (manual optimisation steps none by itself)."""
        sch = self.lr_schedulers()
        if sch is None or isinstance(sch, list):
            return
        if isinstance(sch, torch.optim.lr_scheduler.ReduceLROnPlateau):
            value = self.trainer.callback_metrics.get(self.monitor)
            if value is not None:
                sch.step(float(value))
        else:
            sch.step()

    def finite_weights(self) -> bool:
        """True when every parameter and buffer of the net is finite (gate for registration)."""
        tensors = [*self.net.parameters(), *self.net.buffers()]
        return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())

    def configure_optimizers(self) -> Any:
        """Build the optimiser (and scheduler) from the configured partials."""
        if not self._has_params():
            return None  # parameter-free baselines: evaluated like models, nothing to fit
        opt = self.optimizer_factory(params=[p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": self.scheduler_factory(optimizer=opt)}
