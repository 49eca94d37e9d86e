import math

import pytest
import torch

from forecast.evaluation.metrics import ContingencyScores, LeadTimeMetrics


def test_per_lead_mse_mae_hand_values_with_mask():
    pred = torch.zeros(1, 2, 2)
    target = torch.tensor([[[1.0, 3.0], [2.0, float("nan")]]])
    mask = torch.tensor([[[True, False], [True, True]]])
    m = LeadTimeMetrics(horizon=2)
    m.update(pred, target, mask)
    out = m.compute()
    assert out["mse_lead1"].item() == pytest.approx(1.0)  # 3.0 is masked
    assert out["mse_lead2"].item() == pytest.approx(4.0)  # NaN is skipped
    assert out["mae_lead2"].item() == pytest.approx(2.0)
    assert out["rmse_lead2"].item() == pytest.approx(2.0)
    assert out["mse"].item() == pytest.approx(2.5)


def test_contingency_hand_values():
    # lead 1: pred events [1,1,0,0], observed [1,0,1,0] -> H=1, F=1, M=1
    pred = torch.tensor([[[2.0, 2.0, 0.0, 0.0]]])
    target = torch.tensor([[[2.0, 0.0, 2.0, 0.0]]])
    c = ContingencyScores([1.0], horizon=1)
    c.update(pred, target)
    s = c.compute()
    assert s["csi"].item() == pytest.approx(1 / 3)
    assert s["pod"].item() == pytest.approx(1 / 2)
    assert s["far"].item() == pytest.approx(1 / 2)


def test_contingency_undefined_is_nan():
    c = ContingencyScores([10.0], horizon=1)
    c.update(torch.zeros(1, 1, 3), torch.zeros(1, 1, 3))
    assert math.isnan(c.compute()["csi"].item())


def test_gridded_ssim_psnr_perfect_forecast():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 1, 16, 16, generator=g)
    m = LeadTimeMetrics(horizon=3, gridded=True, thresholds=[0.5], data_range=1.0)
    m.update(y.clone(), y)
    out = m.compute()
    assert out["ssim_lead1"].item() == pytest.approx(1.0, abs=1e-4)
    assert out["csi_t0.5_lead3"].item() == pytest.approx(1.0)
    noisy = LeadTimeMetrics(horizon=3, gridded=True, data_range=1.0)
    noisy.update(y + 0.3 * torch.rand(y.shape, generator=g), y)
    assert noisy.compute()["ssim_lead1"].item() < 0.99
    assert noisy.compute()["psnr"].item() < out["psnr"].item()


def test_metrics_refuse_shape_mismatch():
    with pytest.raises(ValueError, match="expected prediction and target"):
        LeadTimeMetrics(horizon=2).update(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3))
