"""Moving MNIST presets against OpenSTL's ConvLSTM: MSE and MAE per frame, SSIM, PSNR.

Run: python -m benchmarks.skill_video [--preset moving_mnist_fast] [--quick]
The preset ``conf/experiment/NAME.yaml`` is composed with Hydra's compose API and trained by
:func:`forecast.runs.train.train` (no tracking), then scored on its test windows the way OpenSTL
scores video (``openstl/core/metrics.py``), beside persistence (the last input frame repeated):

- ``mse_frame``, ``mae_frame``: squared (absolute) error summed over the 64 x 64 pixels of a frame
  (pixels in [0, 1]), averaged over frames and sequences, i.e. the per-pixel value x 4096; taken
  from the run's ``test/mse`` and ``test/mae`` (unclipped predictions, as OpenSTL).
- ``ssim``, ``psnr``: per frame on predictions clipped to [0, 1], averaged over frames; PSNR is
  ``-10 log10(frame MSE)``. SSIM is torchmetrics' (11 x 11 Gaussian window, sigma 1.5, data
  range 1), the task's own; OpenSTL calls scikit-image's, so SSIM is close to, not exactly,
  OpenSTL's definition.

The model's SSIM and PSNR come from the run's best checkpoint (the weights the run tested),
re-run on the same test windows (``trainer.limit_test_batches`` is honoured).
``--quick`` trains one short epoch on a few batches (CI: proves the case runs, not its skill).
The last line printed is one JSON object ``{"cases": [...]}``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from benchmarks.frame_scores import (
    HIGHER_IS_BETTER,
    METRICS,
    OPENSTL_CONVLSTM,
    frame_pixels,
    score_test_windows,
)
from benchmarks.skill_rows import QUICK, Row, compose_case, json_line
from forecast.errors import ForecastError
from forecast.runs.build import build_net
from forecast.runs.train import train
from forecast.training.checkpoints import load_checkpoint_file

VIDEO_PRESETS = ("moving_mnist", "moving_mnist_fast")


def best_net(cfg: DictConfig, checkpoint: str | Path | None = None) -> torch.nn.Module:
    """The run's net with the weights of its best checkpoint (``callbacks.model_checkpoint``)."""
    if checkpoint is None:
        saver = cfg.callbacks.model_checkpoint
        checkpoint = Path(str(saver.dirpath)) / f"{saver.filename}.ckpt"
    dm = instantiate(cfg.data)
    net, _ = build_net(instantiate(cfg.model.net), dm.describe(), dm)
    state = load_checkpoint_file(checkpoint)["state_dict"]
    net.load_state_dict({k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")})
    return net.eval()


def video_rows(
    case: str,
    cfg: DictConfig,
    metrics: dict[str, float],
    wall: float,
    checkpoint: str | Path | None = None,
) -> list[Row]:
    """One row per OpenSTL metric over the 10 forecast frames, persistence as the baseline.

    Call it while the run's output folder (its best checkpoint) still exists. The checkpoint
    must reproduce the run's test MSE (relative difference below 1e-3), or the SSIM and PSNR
    would be another model's.

    Args:
        case: the case name (the preset's).
        cfg: the run's composed config.
        metrics: the run's metrics (``test/mse``, ``test/mae``: per-pixel means on [0, 1]).
        wall: the run's training and testing seconds.
        checkpoint: the weights to score SSIM and PSNR with (default: the run's best).

    Returns:
        Rows ``mse_frame``, ``mae_frame``, ``ssim``, ``psnr`` (``by="horizon"``, horizon in
        frames), OpenSTL's ConvLSTM as the reference.

    Raises:
        ValueError: the checkpoint does not reproduce the run's test MSE.
    """
    pixels = frame_pixels(cfg)
    scored = score_test_windows(cfg, best_net(cfg, checkpoint))
    model = scored["model"] | {
        "mse_frame": metrics["test/mse"] * pixels,
        "mae_frame": metrics["test/mae"] * pixels,
    }
    again = scored["model"]["mse_frame"]
    if not abs(again - model["mse_frame"]) <= 1e-3 * model["mse_frame"]:
        raise ValueError(
            f"checkpoint gives test MSE per frame {again:.4f}, the run {model['mse_frame']:.4f}: "
            "not the weights the run tested"
        )
    rows = []
    for m in METRICS:
        baselines = {"persistence": scored["persistence"][m]}
        rows.append(Row(case, int(cfg.horizon), m, [model[m]], OPENSTL_CONVLSTM[m], baselines))
        rows[-1].seconds.append(wall)
    return rows


def verdicts(rows: list[Row]) -> list[str]:
    """Per metric: persistence beaten or not; the ratio to OpenSTL's ConvLSTM."""
    lines = []
    for r in rows:
        better = (r.value > r.baselines["persistence"]) == (r.metric in HIGHER_IS_BETTER)
        note = "beats" if better else "does NOT beat"
        ref = "" if r.reference is None else f"; OpenSTL ConvLSTM {r.reference:g}"
        lines.append(f"{r.case} {r.metric} {r.value:.4f} {note} persistence "
                     f"{r.baselines['persistence']:.4f}{ref}")  # fmt: skip
    return lines


def print_table(rows: list[Row], console: Console) -> None:
    """Model, persistence and OpenSTL's ConvLSTM per metric."""
    table = Table(title="Moving MNIST test frames (10 -> 10; MSE/MAE per frame, pixels in [0, 1])")
    for col in ("case", "frames", "metric", "model", "persistence", "OpenSTL ConvLSTM",
                "model / OpenSTL", "wall s"):  # fmt: skip
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        ref = "-" if r.reference is None else f"{r.reference:g}"
        ratio = "-" if r.reference is None else f"{r.value / r.reference:.3f}"
        table.add_row(r.case, str(r.horizon), r.metric, f"{r.value:.4f}",
                      f"{r.baselines['persistence']:.4f}", ref, ratio,
                      f"{r.seconds[0]:.0f}")  # fmt: skip
    console.print(table)


def run_preset(preset: str, quick: bool) -> list[Row]:
    """Train the preset once (seed 7) and score it."""
    with tempfile.TemporaryDirectory(prefix="skill-video-") as tmp:
        cfg = compose_case(preset, None, 7, Path(tmp), QUICK if quick else [])
        t0 = time.perf_counter()
        result = train(cfg)
        wall = time.perf_counter() - t0
        return video_rows(preset, cfg, result.metrics, wall, result.checkpoint)


def main(argv: list[str] | None = None) -> None:
    """Train the preset, print the table, the verdicts and the JSON line."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--preset", choices=VIDEO_PRESETS, default="moving_mnist_fast")
    parser.add_argument("--quick", action="store_true", help="one short epoch on a few batches")
    args = parser.parse_args(argv)
    try:
        rows = run_preset(args.preset, args.quick)
    except ForecastError as e:
        raise SystemExit(f"error: {e}") from None
    print_table(rows, Console(width=150))
    for line in verdicts(rows):
        print(line)
    sys.stdout.flush()
    print(json_line(rows))


if __name__ == "__main__":
    main()
