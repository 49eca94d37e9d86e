"""Cost of ForecastTask's per-step extras against a bare LightningModule, same run, same net.

Run: python -m benchmarks.task_step [--steps N] [--repeats N] [--hidden C] [--batch B]
Claim checked: the non-finite checks and the per-step gradient-norm log of ForecastTask cost
little next to a bare automatic-optimisation LightningModule; both clip through
Trainer(gradient_clip_val=1.0). Both train the default ConvLSTMForecaster
(hidden [32, 32], patch 2; --hidden/--batch shrink it) on 32x32 frames, batch 16, 12 -> 6
steps, for N steps per repeat; variants are interleaved per repeat so machine load falls on
both alike. The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from functools import partial
from typing import Any

import pytorch_lightning as L
import torch
from torch.utils.data import DataLoader

from forecast.models.conv_lstm import ConvLSTMForecaster
from forecast.training.losses import MaskedMSE
from forecast.training.task import ForecastTask


class AutoTask(L.LightningModule):
    """Reference: the same net and loss under Lightning's automatic optimisation."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net, self.loss_fn = net, MaskedMSE()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """The masked MSE; Lightning does backward, clipping and the step."""
        return self.loss_fn(self.net(batch["x"]), batch["y"])

    def configure_optimizers(self) -> Any:
        """AdamW as in conf/model/conv_lstm.yaml."""
        return torch.optim.AdamW(self.parameters(), lr=2e-3, weight_decay=0.01)


def make_net(hidden: int) -> ConvLSTMForecaster:
    """The default net (two layers of ``hidden`` channels, patch 2), seeded."""
    torch.manual_seed(0)
    return ConvLSTMForecaster(1, horizon=6, hidden_channels=[hidden, hidden], patch=2)


def fit_seconds(module: L.LightningModule, data: list[dict[str, torch.Tensor]], **kw: Any) -> float:
    """Wall seconds per training step of one epoch over ``data``."""
    trainer = L.Trainer(
        max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, accelerator="cpu", **kw,
    )  # fmt: skip
    loader = DataLoader(data, batch_size=None)
    t0 = time.perf_counter()
    trainer.fit(module, train_dataloaders=loader)
    return (time.perf_counter() - t0) / len(data)


def main() -> None:
    """Measure both variants, interleaved, and print the table and the JSON line."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    # smaller nets make the fixed per-step overhead of the task look larger (a harsher test)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    g = torch.Generator().manual_seed(0)
    data = [
        {
            "x": torch.randn(args.batch, 12, 1, 32, 32, generator=g),
            "y": torch.randn(args.batch, 6, 1, 32, 32, generator=g),
        }
        for _ in range(args.steps)
    ]
    opt = partial(torch.optim.AdamW, lr=2e-3, weight_decay=0.01)
    times: dict[str, list[float]] = {"bare (reference)": [], "ForecastTask": []}
    for _ in range(args.repeats):
        times["bare (reference)"].append(
            fit_seconds(AutoTask(make_net(args.hidden)), data, gradient_clip_val=1.0)
        )
        task = ForecastTask(make_net(args.hidden), opt)
        times["ForecastTask"].append(fit_seconds(task, data, gradient_clip_val=1.0))
    med = {k: statistics.median(v) for k, v in times.items()}
    ref = med["bare (reference)"]
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, steps {args.steps}, "
        f"hidden {args.hidden}, batch {args.batch}"
    )
    print(f"{'variant':<22}{'s/step':>10}{'ratio':>8}")
    for k, v in med.items():
        print(f"{k:<22}{v:>10.4f}{v / ref:>8.3f}")
    print(json.dumps({"s_per_step": med, "ratio_task_vs_bare": med["ForecastTask"] / ref}))


if __name__ == "__main__":
    main()
