"""OpenSTL's video metrics in benchmarks.skill_video: per-frame sums, clipping, persistence."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks import frame_scores, skill_video
from benchmarks.skill import compose_case
from forecast.models.baselines import persistence


def _moving_block(frames: int, size: int = 16, side: int = 4) -> torch.Tensor:
    """A side x side block of ones moving one pixel right per frame: (1, frames, 1, size, size)."""
    seq = torch.zeros(1, frames, 1, size, size)
    for t in range(frames):
        seq[0, t, 0, 6 : 6 + side, t : t + side] = 1.0
    return seq


def test_errors_are_summed_over_the_pixels_of_a_frame():
    target = torch.zeros(2, 3, 1, 16, 16)
    target[0, 0, 0, :4, :4] = 1.0  # 16 wrong pixels in one of 6 frames
    scores = frame_scores.FrameScores()
    scores.update(torch.zeros_like(target), target)
    out = scores.compute()
    assert out["mse_frame"] == pytest.approx(16 / 6)  # not the per-pixel 16 / (6 * 256)
    assert out["mae_frame"] == pytest.approx(16 / 6)
    per_pixel = float((target**2).mean())
    assert out["mse_frame"] == pytest.approx(per_pixel * 16 * 16)


def test_persistence_of_a_moving_block_has_the_hand_counted_error():
    seq = _moving_block(8)
    x, y = seq[:, :5], seq[:, 5:]
    scores = frame_scores.FrameScores()
    scores.update(persistence(x, 3), y)
    # lead k: the block moved k pixels, so 2 * 4 * k pixels differ by 1
    assert scores.compute()["mse_frame"] == pytest.approx((8 + 16 + 24) / 3)


def test_psnr_is_a_mean_over_frames_of_clipped_predictions():
    target = torch.full((1, 2, 1, 16, 16), 0.5)
    pred = target.clone()
    pred[0, 0] += 0.1  # frame MSE 0.01: 20 dB
    pred[0, 1] -= 0.1  # 20 dB too
    scores = frame_scores.FrameScores()
    scores.update(pred, target)
    assert scores.compute()["psnr"] == pytest.approx(20.0)
    ones = torch.ones(1, 1, 1, 16, 16)
    over = frame_scores.FrameScores()
    over.update(ones * 1.5, ones)  # clipped to 1: exact, PSNR at its 100 dB cap, SSIM 1
    out = over.compute()
    assert out["psnr"] == pytest.approx(100.0)
    assert out["ssim"] == pytest.approx(1.0, abs=1e-6)
    assert out["mse_frame"] == pytest.approx(0.25 * 256)  # errors are of the raw prediction


def test_moving_mnist_frames_have_4096_pixels(tmp_path):
    for preset in skill_video.VIDEO_PRESETS:
        cfg = compose_case(preset, None, 7, tmp_path, [])
        assert skill_video.frame_pixels(cfg) == 64 * 64
        assert int(cfg.horizon) == 10 and int(cfg.context_steps) == 10
        assert math.isclose(float(cfg.model.data_range), 1.0)
