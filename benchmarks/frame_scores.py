"""OpenSTL's video metrics per frame (MSE, MAE, SSIM, PSNR), scored on a preset's test windows.

Shared by ``benchmarks.skill_video`` (a tracked preset run) and ``benchmarks.video_budget`` (a
fixed wall-clock budget on a GPU); imports neither MLflow nor the run module.
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch import Tensor
from torchmetrics.functional.image import structural_similarity_index_measure

from forecast.models.baselines import persistence

# OpenSTL's ConvLSTM-S (15.0M parameters), Moving MNIST 10 -> 10, 200 epochs on one GPU
# (docs/en/model_zoos/video_benchmarks.md, "STL Benchmarks on MMNIST")
OPENSTL_CONVLSTM = {"mse_frame": 29.80, "mae_frame": 90.64, "ssim": 0.9288, "psnr": 22.10}
METRICS = ("mse_frame", "mae_frame", "ssim", "psnr")
HIGHER_IS_BETTER = {"ssim", "psnr"}
PSNR_FLOOR = 1e-10  # frame MSE floor: an exact frame scores 100 dB, not infinity


class FrameScores:
    """Sums of OpenSTL's video metrics over the frames of a split.

    Update with ``(pred, target)`` of shape (B, T, C, H, W), pixels in [0, 1].
    """

    def __init__(self) -> None:
        self.sse = self.sae = self.ssim = self.psnr = 0.0
        self.frames = 0

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add a batch: errors of the raw prediction, SSIM and PSNR of the clipped one."""
        if pred.shape != target.shape or pred.dim() != 5:
            raise ValueError(
                f"frames: expected (B, T, C, H, W) of one shape, got {tuple(pred.shape)} and "
                f"{tuple(target.shape)}"
            )
        pred, target = pred.double(), target.double()
        err = pred - target
        self.sse += float((err**2).sum())
        self.sae += float(err.abs().sum())
        clipped = pred.clamp(0.0, 1.0).flatten(0, 1)  # (B*T, C, H, W)
        truth = target.flatten(0, 1)
        frame_mse = ((clipped - truth) ** 2).flatten(1).mean(dim=1)
        self.psnr += float((-10.0 * torch.log10(frame_mse.clamp(min=PSNR_FLOOR))).sum())
        # SSIM in float32: 10x faster than float64 on a CPU core (0.16 s against 1.58 s for 80
        # frames) for a difference of 2e-9; the error sums above stay in float64
        ssim = structural_similarity_index_measure(
            clipped.float(), truth.float(), data_range=1.0, reduction="none"
        )
        assert isinstance(ssim, Tensor)
        self.ssim += float(ssim.sum())
        self.frames += len(truth)

    def compute(self) -> dict[str, float]:
        """``mse_frame``, ``mae_frame`` (sums per frame), ``ssim``, ``psnr`` (means per frame)."""
        n = max(self.frames, 1)
        return {
            "mse_frame": self.sse / n,
            "mae_frame": self.sae / n,
            "ssim": self.ssim / n,
            "psnr": self.psnr / n,
        }


def frame_pixels(cfg: DictConfig) -> int:
    """Pixels per frame (C x H x W) of the preset's data: the factor from per-pixel means."""
    spec = instantiate(cfg.data).describe()
    assert spec.grid is not None, "video presets are gridded"
    h, w = spec.grid
    return int(spec.out_channels or spec.in_channels) * int(h) * int(w)


def score_test_windows(cfg: DictConfig, net: torch.nn.Module | None) -> dict[str, dict[str, float]]:
    """OpenSTL's metrics of persistence (and ``net``) on the run's test windows."""
    dm = instantiate(cfg.data)
    dm.setup("test")
    limit = cfg.trainer.get("limit_test_batches")  # the same windows the run was tested on
    scores = {"persistence": FrameScores()} | ({"model": FrameScores()} if net else {})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # as the run was tested
    net = net.to(device) if net is not None else None
    with torch.no_grad():
        for i, batch in enumerate(dm.test_dataloader()):
            if isinstance(limit, int) and i >= limit:
                break
            x, y = batch["x"].to(device), batch["y"].to(device)
            scores["persistence"].update(persistence(x, y.shape[1]), y)
            if net is not None:
                scores["model"].update(net(x), y)
    return {k: v.compute() for k, v in scores.items()}
