"""Moving MNIST in a fixed wall-clock budget: the skill a preset's net reaches, and its full cost.

Run: python -m benchmarks.video_budget [--preset moving_mnist] [--minutes 6] [--set KEY=VALUE]
For a GPU lent for minutes, not for the 200 epochs OpenSTL trains. The preset is composed as
``python -m pipelines.train experiment=NAME`` composes it; its net and task are built as a run
builds them (:mod:`forecast.runs.build`) and trained by Lightning's own loop, with no tracking
(MLflow need not be installed where this runs):

1. a few timed training steps give seconds a step, hence sequences a second and the hours the
   preset's whole budget (its epochs x training sequences) would take at that rate;
2. a fresh net (same seed) then trains for as many whole epochs as fit ``--minutes``, the
   preset's learning-rate schedule stretched over those epochs (``trainer.max_epochs`` is set
   before the task is built, so a cosine schedule still ends at its floor); Lightning's
   ``max_time`` (15 % over) stops it should the estimate be short;
3. the final weights (no selection on validation: the schedule ends the run) are scored on the
   test windows with OpenSTL's metrics (:mod:`benchmarks.frame_scores`) beside persistence and
   OpenSTL's ConvLSTM after 200 epochs.

``--precision`` defaults to ``bf16-mixed`` on CUDA and ``32-true`` on a CPU. The last line is one
JSON object ``{"cases": [...], "budget": {...}}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from benchmarks.frame_scores import (
    HIGHER_IS_BETTER,
    METRICS,
    OPENSTL_CONVLSTM,
    frame_pixels,
    score_test_windows,
)
from benchmarks.skill_rows import Row, compose_case, json_line
from forecast.errors import ForecastError
from forecast.runs.build import build_net, metric_options
from forecast.training.trainer_options import trainer_options

TIMED_STEPS = 20  # after WARM_STEPS: enough for a stable median, seconds on a GPU
WARM_STEPS = 5  # cuDNN autotuning and the first allocations
VAL_COST = 0.35  # a validation batch (forward only) against a training step, measured order


class Clock(L.Callback):
    """Wall-clock time at the end of every training batch and validation epoch."""

    def __init__(self) -> None:
        self.batch_ends: list[float] = []
        self.epochs: list[tuple[int, float, float]] = []  # (epoch, val/mse, seconds since start)
        self.began = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        """Stamp the batch's end."""
        self.batch_ends.append(time.perf_counter())

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record the epoch's val/mse (its validation ran just before this hook)."""
        mse = trainer.callback_metrics.get("val/mse")
        value = float(mse) if mse is not None else float("nan")
        self.epochs.append((trainer.current_epoch, value, time.perf_counter() - self.began))

    def seconds_per_step(self, skip: int) -> float:
        """Median interval between training batches after the first ``skip``."""
        ends = self.batch_ends[skip:]
        gaps = [b - a for a, b in zip(ends[:-1], ends[1:], strict=True)]
        if not gaps:
            raise ValueError(f"too few training steps timed: {len(self.batch_ends)}")
        return statistics.median(gaps)


def fit(cfg: DictConfig, precision: str, **trainer_kwargs: Any) -> tuple[Any, Clock]:
    """Build the run's data, net and task from ``cfg`` and train them; (task, clock)."""
    L.seed_everything(int(cfg.seed), workers=True)
    dm = instantiate(cfg.data)
    spec = dm.describe()
    net, _ = build_net(instantiate(cfg.model.net), spec, dm)
    task = instantiate(cfg.model, net=net, **metric_options(dm, spec))
    options = trainer_options(OmegaConf.to_container(cfg.trainer, resolve=True), task)  # type: ignore[arg-type]
    options.update(precision=precision, logger=False, enable_checkpointing=False)
    options.update(enable_progress_bar=False, num_sanity_val_steps=0, **trainer_kwargs)
    clock = Clock()
    trainer: L.Trainer = instantiate(options, callbacks=[clock])
    trainer.fit(task, datamodule=dm)
    return task, clock


def run(preset: str, minutes: float, precision: str, overrides: list[str]) -> dict[str, Any]:
    """Time the steps, train for the budget, score; the figures as one mapping."""
    torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its kernels once
    with tempfile.TemporaryDirectory(prefix="video-budget-") as tmp:
        cfg = compose_case(preset, None, 7, Path(tmp), overrides)
        _, clock = fit(cfg, precision, max_steps=WARM_STEPS + TIMED_STEPS + 1,
                           limit_val_batches=0)  # fmt: skip
        step_s = clock.seconds_per_step(WARM_STEPS)
        print(f"timed: {step_s * 1e3:.1f} ms a training step", file=sys.stderr, flush=True)
        batch = int(cfg.data.batch_size)
        train_steps = -(-int(cfg.data.n_train) // batch)
        val_steps = -(-int(cfg.data.n_val) // batch)
        epoch_s = step_s * (train_steps + VAL_COST * val_steps)
        epochs = max(1, int(minutes * 60 / (1.1 * epoch_s)))  # 10 % for loaders and epoch ends
        full_epochs = int(cfg.trainer.max_epochs)
        OmegaConf.update(cfg, "trainer.max_epochs", epochs)  # the schedule spans the budget
        began = time.perf_counter()
        guard = int(minutes * 60 * 1.15)  # Lightning's max_time: DD:HH:MM:SS
        stop = f"00:{guard // 3600:02d}:{guard // 60 % 60:02d}:{guard % 60:02d}"
        task, clock = fit(cfg, precision, max_time=stop)
        trained_s = time.perf_counter() - began
        print(f"trained: {len(clock.epochs)} of {epochs} epochs in {trained_s:.0f} s; val/mse "
              f"{[round(e[1], 6) for e in clock.epochs]}", file=sys.stderr, flush=True)  # fmt: skip
        began = time.perf_counter()
        scored = score_test_windows(cfg, task.net.eval())  # the final weights, on the GPU if any
        print(f"scored in {time.perf_counter() - began:.0f} s", file=sys.stderr, flush=True)
    return {
        "pixels": frame_pixels(cfg),
        "cfg": cfg,
        "scored": scored,
        "epochs_log": clock.epochs,
        "budget": {
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
            "precision": precision,
            "seconds_per_step": step_s,
            "sequences_per_s": batch / step_s,
            "epochs_planned": epochs,
            "epochs_done": len(clock.epochs),
            "train_s": trained_s,
            "full_budget_hours": full_epochs * int(cfg.data.n_train) * step_s / batch / 3600,
            "full_budget_epochs": full_epochs,
        },
    }


def rows_of(preset: str, result: dict[str, Any]) -> list[Row]:
    """One row per OpenSTL metric, persistence as the baseline, OpenSTL's ConvLSTM the reference."""
    scored, horizon = result["scored"], int(result["cfg"].horizon)
    rows = []
    for m in METRICS:
        row = Row(preset, horizon, m, [scored["model"][m]], OPENSTL_CONVLSTM[m],
                  {"persistence": scored["persistence"][m]})  # fmt: skip
        row.seconds.append(result["budget"]["train_s"])
        rows.append(row)
    return rows


def print_tables(rows: list[Row], result: dict[str, Any], console: Console) -> None:
    """The epochs trained, the test metrics against references, and the cost of the full budget."""
    epochs = Table(title="Epochs in the budget (val MSE per frame; seconds since training began)")
    for col in ("epoch", "val mse_frame", "seconds"):
        epochs.add_column(col, justify="right")
    for epoch, mse, seconds in result["epochs_log"]:
        epochs.add_row(str(epoch), f"{mse * result['pixels']:.2f}", f"{seconds:.0f}")
    console.print(epochs)
    table = Table(title="Moving MNIST test frames after the budget (MSE/MAE per frame)")
    for col in ("metric", "model", "persistence", "OpenSTL ConvLSTM (200 ep)", "model / OpenSTL",
                "beats persistence"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in rows:
        assert r.reference is not None
        better = (r.value > r.baselines["persistence"]) == (r.metric in HIGHER_IS_BETTER)
        table.add_row(r.metric, f"{r.value:.4f}", f"{r.baselines['persistence']:.4f}",
                      f"{r.reference:g}", f"{r.value / r.reference:.3f}",
                      "yes" if better else "NO")  # fmt: skip
    console.print(table)
    b = result["budget"]
    console.print(
        f"{b['device']}, {b['precision']}: {b['seconds_per_step'] * 1e3:.1f} ms a step, "
        f"{b['sequences_per_s']:.1f} sequences/s; {b['epochs_done']} of {b['epochs_planned']} "
        f"planned epochs in {b['train_s']:.0f} s; the preset's {b['full_budget_epochs']} epochs "
        f"would take {b['full_budget_hours']:.2f} h at this rate"
    )


def main(argv: list[str] | None = None) -> None:
    """Parse, run, print the tables and the JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--preset", default="moving_mnist")
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget (wall clock)")
    parser.add_argument(
        "--precision", default=None, help="Lightning precision (default: bf16 on CUDA)"
    )
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a Hydra override (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    if not args.minutes > 0:
        raise SystemExit(f"error: --minutes must be > 0, got {args.minutes}")
    precision = args.precision or ("bf16-mixed" if torch.cuda.is_available() else "32-true")
    try:
        result = run(args.preset, args.minutes, precision, args.set)
    except ForecastError as e:
        raise SystemExit(f"error: {e}") from None
    rows = rows_of(args.preset, result)
    print_tables(rows, result, Console(width=150))
    sys.stdout.flush()
    print(json.dumps(json.loads(json_line(rows)) | {"budget": result["budget"]}))


if __name__ == "__main__":
    main()
