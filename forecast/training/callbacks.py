"""Gradient flow through time: ||dL/dh_k|| per lag k on a validation batch (vanishing/exploding).

The lecture's picture: dL_T/ds_k carries a product of T - k Jacobians, so its norm shrinks or grows
geometrically with the lag. Here it is measured on the user's own model: the hidden state h_k of
the last layer of the net's first recurrent stack is recorded at every context step (its ``.grad``
is the total derivative, through every later step), and the norm is plotted against the lag.
Nets whose recurrence runs in a fused kernel (torch's LSTM) fall back to the inputs, dL/dx_k.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as L
import torch
from pytorch_lightning.loggers import MLFlowLogger
from torch import Tensor, nn

from forecast.models.conv_recurrent import ConvRecurrentStack
from forecast.models.recurrent import StackedRecurrent


def find_probe(net: nn.Module) -> nn.Module | None:
    """The cell whose states are measured: last layer of the first recurrent stack with cells."""
    for module in net.modules():
        if isinstance(module, ConvRecurrentStack):
            return module.cells[-1]
        if isinstance(module, StackedRecurrent) and len(module.cell_layers):
            return module.cell_layers[-1][0]  # forward direction
    return None


@contextmanager
def record_states(cell: nn.Module) -> Iterator[list[Tensor]]:
    """Record the hidden state ``h`` that ``cell.step`` returns at every call, keeping its grad."""
    states: list[Tensor] = []
    step = cell.step

    def recording_step(*args: Any, **kwargs: Any) -> Any:
        h, state = step(*args, **kwargs)
        if h.requires_grad:
            h.retain_grad()
        states.append(h)
        return h, state

    cell.step = recording_step  # instance attribute shadows the method for this block only
    try:
        yield states
    finally:
        del cell.step


def gradient_flow(task: Any, batch: dict[str, Tensor], steps: int | None = None) -> dict[str, Any]:
    """||dL/dh_k|| for every context step k of one batch.

    Args:
        task: a :class:`~forecast.training.task.ForecastTask` (net, loss and batch wiring).
        batch: one batch (plain tensors, not inference-mode tensors).
        steps: number of context steps (default: ``batch["x"].shape[1]``).

    Returns:
        ``{"lag": (T,) int, "norm": (T,) float, "what": "hidden" | "input"}``; lag 0 is the last
        context step; norms are per sample (batch norm / sqrt(B)).
    """
    steps = steps or batch["x"].shape[1]
    x = batch["x"].detach().clone().requires_grad_(True)
    batch = {**batch, "x": x}
    probe = find_probe(task.net)
    with torch.enable_grad():
        if probe is not None:
            with record_states(probe) as states:
                pred = task.predict_batch(batch)
            hs = states[:steps]
        else:
            pred = task.predict_batch(batch)
            hs = []
        loss = task.loss_fn(pred, batch["y"], batch.get("y_mask"))
        task.net.zero_grad(set_to_none=True)
        if loss.requires_grad:  # else the forecast ignores x (climatology): every gradient is 0
            loss.backward()
    task.net.zero_grad(set_to_none=True)
    use_hidden = len(hs) == steps and all(h.grad is not None for h in hs)
    x_grad = x.grad if x.grad is not None else torch.zeros_like(x)
    grads = [h.grad for h in hs] if use_hidden else list(x_grad.unbind(1))
    b = x.shape[0]
    norms = torch.stack([g.float().norm() / b**0.5 for g in grads]).flip(0)  # lag 0 first
    return {
        "lag": torch.arange(len(grads)),
        "norm": norms.detach().cpu(),
        "what": "hidden" if use_hidden else "input",
    }


def plot_gradient_flow(flow: dict[str, Any], title: str = "") -> Any:
    """A log-scale plot of the norm against the lag; returns the matplotlib figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.semilogy(flow["lag"].numpy(), flow["norm"].clamp(min=1e-30).numpy(), marker="o")
    sym = "h" if flow["what"] == "hidden" else "x"
    ax.set_xlabel("lag k (steps before the last context step)")
    ax.set_ylabel(f"||dL/d{sym}_(T-k)||")
    ax.set_title(title or "gradient flow through time")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return fig


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
        was_training = pl_module.training
        pl_module.eval()
        try:
            self.last = gradient_flow(pl_module, batch)
        finally:
            pl_module.train(was_training)
        norm = self.last["norm"]
        pl_module.log("grad_flow/ratio", float(norm[-1] / norm[0].clamp(min=1e-30)))
        fig = plot_gradient_flow(
            self.last, f"{type(pl_module.net).__name__}, epoch {trainer.current_epoch}"
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
