"""The optimisation half of the task: the non-finite policy and truncated BPTT's manual steps.

Automatic optimisation (every net but TBPTT) logs the pre-clip gradient norm and drops a
non-finite step here; Lightning clips and steps. Truncated BPTT takes several optimiser steps per
batch, so it optimises manually: backward, the same non-finite check, clipping with
``self.clip_gradients`` (precision-aware, as the Trainer's), the step, and the LR scheduler once
per epoch. :class:`~forecast.training.task.ForecastTask` builds on this class.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as L
import torch
from torch import Tensor, nn

from forecast.training.gradients import NonFiniteError, check_clip, total_grad_norm


class GuardedSteps(L.LightningModule):
    """Gradient steps that survive a non-finite loss or gradient (policy ``nonfinite``).

    Subclasses set ``net``, ``nonfinite`` (``"skip"`` or ``"raise"``) and ``monitor`` in
    ``__init__``; manual (TBPTT) clipping is off until :meth:`clip_manually`.
    """

    net: nn.Module
    nonfinite: str
    monitor: str

    def __init__(self) -> None:
        super().__init__()
        # TBPTT clipping; the composition root hands over the Trainer's settings (clip_manually)
        self.clip_val: float | None = None
        self.clip_algorithm = "norm"
        self.skipped_steps = 0

    def clip_manually(self, value: float | None, algorithm: str | None = "norm") -> None:
        """Clip TBPTT's manual steps like ``Trainer(gradient_clip_val, gradient_clip_algorithm)``.

        Lightning refuses Trainer-side clipping under manual optimisation, so the composition
        root moves the Trainer's two settings here for a TBPTT task.
        """
        check_clip(value, algorithm)
        self.clip_val, self.clip_algorithm = value, algorithm or "norm"

    def _gradients_finite(self, optimizer: Any) -> bool:
        """Log the pre-clip gradient norm; apply the non-finite policy (drop the gradients)."""
        norm = total_grad_norm(self.net.parameters())
        if not bool(torch.isfinite(norm)):
            optimizer.zero_grad(set_to_none=True)  # no gradient: the optimiser skips every param
            self._non_finite("gradient norm", norm)
            return False
        self.log("train/grad_norm", norm, on_step=True, on_epoch=False)
        return True

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Automatic optimisation: gradients are unscaled and not yet clipped here."""
        if self.automatic_optimization and self._has_params():  # a baseline has no gradients
            self._gradients_finite(optimizer)

    def _optimise(self, loss: Tensor) -> None:
        """One manual TBPTT step: backward, non-finite check, clipping, optimiser step."""
        opt = self.optimizers()
        assert not isinstance(opt, list)
        if not bool(torch.isfinite(loss)):
            self._non_finite("loss", loss)
            return
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        if not self._gradients_finite(opt):
            return
        if self.clip_val:
            self.clip_gradients(
                opt.optimizer,  # the wrapped torch optimiser, as the signature asks
                gradient_clip_val=self.clip_val,
                gradient_clip_algorithm=self.clip_algorithm,
            )
        opt.step()

    def _non_finite(self, what: str, value: Tensor) -> None:
        if self.nonfinite == "raise":
            raise NonFiniteError(
                f"non-finite {what} ({float(value.detach())}) at global step {self.global_step}; "
                "lower the learning rate, clip gradients (trainer.gradient_clip_val), or set "
                "nonfinite=skip"
            )
        self.skipped_steps += 1
        self.log("train/skipped_steps", float(self.skipped_steps), on_step=True, on_epoch=False)

    def _has_params(self) -> bool:
        return any(p.requires_grad for p in self.net.parameters())

    def on_train_epoch_end(self) -> None:
        """TBPTT (manual optimisation) steps its LR scheduler itself; Lightning does otherwise."""
        if self.automatic_optimization:
            return
        sch = self.lr_schedulers()
        if sch is None or isinstance(sch, list):
            return
        if isinstance(sch, torch.optim.lr_scheduler.ReduceLROnPlateau):
            value = self.trainer.callback_metrics.get(self.monitor)
            if value is not None:
                sch.step(float(value))
        else:
            sch.step()
