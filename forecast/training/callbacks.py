"""Callbacks of our own where Lightning has none: gradient flow per epoch, a plain progress line.

Everything else (checkpointing, early stopping, LR monitoring, the rich progress bar) is
Lightning's own, chosen in ``conf/callbacks/``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import pytorch_lightning as L
from pytorch_lightning.callbacks import LearningRateMonitor, ProgressBar, RichProgressBar
from pytorch_lightning.loggers import MLFlowLogger
from torch import Tensor

from forecast.training.gradient_flow import gradient_flow, plot_gradient_flow

progress_log = logging.getLogger("forecast.progress")


class GradientFlowCallback(L.Callback):
    """Measure gradient flow on the first validation batch; save a PNG and log it to MLflow.

    Also logs ``grad_flow/ratio``: the norm at the largest lag over the norm at lag 0 (<< 1:
    vanishing, >> 1: exploding).

    Args:
        every_n_epochs: measure every n training epochs.
        max_samples: samples of the batch used.
    """

    def __init__(self, every_n_epochs: int = 1, max_samples: int = 8) -> None:
        super().__init__()
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs: expected >= 1, got {every_n_epochs}")
        self.every_n_epochs, self.max_samples = every_n_epochs, max_samples
        self._batch: dict[str, Tensor] | None = None
        self.last: dict[str, Any] | None = None
        self.paths: list[Path] = []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the first validation batch (cloned later, outside inference mode)."""
        if batch_idx == 0 and dataloader_idx == 0 and not trainer.sanity_checking:
            self._batch = {
                k: v[: self.max_samples] for k, v in batch.items() if isinstance(v, Tensor)
            }

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Measure, plot, save and log."""
        if self._batch is None or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        batch = {k: v.clone() for k, v in self._batch.items()}  # normal tensors again
        task: Any = pl_module
        self.last = gradient_flow(
            task.net, batch["x"], batch["y"], batch.get("y_mask"), task.loss_fn,
            forward=lambda x: task.predict_batch({**batch, "x": x}),
        )  # fmt: skip
        norm = self.last["norm"]
        pl_module.log("grad_flow/ratio", float(norm[-1] / norm[0].clamp(min=1e-30)))
        fig = plot_gradient_flow(
            self.last, f"{type(task.net).__name__}, epoch {trainer.current_epoch}"
        )
        out = Path(trainer.log_dir or trainer.default_root_dir) / "gradient_flow"
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"epoch{trainer.current_epoch:03d}.png"
        fig.savefig(path, dpi=100)
        import matplotlib.pyplot as plt

        plt.close(fig)
        self.paths.append(path)
        logger = trainer.logger
        if isinstance(logger, MLFlowLogger) and logger.run_id:
            logger.experiment.log_artifact(logger.run_id, str(path), "gradient_flow")


class ProgressLine(ProgressBar):
    """A plain progress line on the ``forecast.progress`` logger (cron, CI, log files).

    A :class:`~pytorch_lightning.callbacks.ProgressBar`, so Lightning adds no tqdm bar beside it.
    Logged every ``every_n_steps`` optimiser steps (loss) and after each validation epoch (loss,
    monitored metric); the Hydra job log receives it like any ``logging`` record.

    Args:
        every_n_steps: steps between two training lines (0: epoch lines only).
        monitor: the validation metric to show.
    """

    def __init__(self, every_n_steps: int = 50, monitor: str = "val/rmse") -> None:
        super().__init__()
        if every_n_steps < 0:
            raise ValueError(f"every_n_steps: expected >= 0, got {every_n_steps}")
        self.every_n_steps, self.monitor = every_n_steps, monitor
        self._enabled = True

    def disable(self) -> None:
        """Lightning silences progress bars outside rank 0."""
        self._enabled = False

    def enable(self) -> None:
        """Lightning re-enables the bar after e.g. a sanity check."""
        self._enabled = True

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
        batch_idx: int,
    ) -> None:  # fmt: skip
        """One line every ``every_n_steps`` steps."""
        step = trainer.global_step
        if self._enabled and self.every_n_steps and step and step % self.every_n_steps == 0:
            loss = trainer.callback_metrics.get("train/loss")
            shown = "nan" if loss is None else f"{float(loss):.4f}"
            progress_log.info(f"epoch {trainer.current_epoch} step {step} train/loss {shown}")

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """One line per validation run (after the task has logged its epoch metrics)."""
        if trainer.sanity_checking or not self._enabled:
            return
        m = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch} step {trainer.global_step}"]
        for key in ("train/loss", "val/loss", self.monitor):
            if key in m:
                parts.append(f"{key} {float(m[key]):.4f}")
        progress_log.info(" ".join(dict.fromkeys(parts)))


def progress_callback(
    every_n_steps: int = 50, monitor: str = "val/rmse", enabled: bool = True
) -> L.Callback:
    """Lightning's rich bar on a terminal; :class:`ProgressLine` when stdout is not a TTY.

    Args:
        every_n_steps: steps between two plain lines.
        monitor: the validation metric the plain line shows.
        enabled: the Trainer's ``enable_progress_bar`` (False: a callback doing nothing, since
            Lightning refuses a progress bar callback with the bar disabled).
    """
    if not enabled:
        return L.Callback()
    if sys.stdout.isatty():
        return RichProgressBar()
    return ProgressLine(every_n_steps, monitor)


def lr_monitor(scheduler: Any = None, logger: Any = None) -> L.Callback:
    """Lightning's ``LearningRateMonitor`` when a scheduler is set and a logger records it.

    Args:
        scheduler: the model's scheduler config (None: constant LR, nothing to monitor).
        logger: the logger config (None: nowhere to log; Lightning would refuse the monitor).
    """
    if not scheduler or not logger:
        return L.Callback()
    return LearningRateMonitor(logging_interval="epoch")
