import math

import pytest
import torch

from forecast.evaluation.errors import LeadErrors, latitude_weights
from forecast.evaluation.metrics import ContingencyScores, lead_time_metrics


def test_per_lead_and_pooled_errors_hand_values_with_mask():
    pred = torch.zeros(1, 2, 2)
    target = torch.tensor([[[1.0, 3.0], [2.0, float("nan")]]])
    mask = torch.tensor([[[True, False], [True, True]]])
    m = lead_time_metrics(horizon=2, channels=1)
    m.update(pred=pred, target=target, mask=mask)
    out = m.compute()
    assert out["mse_lead1"].item() == pytest.approx(1.0)  # 3.0 is masked
    assert out["mse_lead2"].item() == pytest.approx(4.0)  # NaN is skipped
    assert out["mae_lead2"].item() == pytest.approx(2.0)
    assert out["rmse_lead2"].item() == pytest.approx(2.0)
    assert out["mse"].item() == pytest.approx(2.5)
    assert out["rmse"].item() == pytest.approx(math.sqrt(2.5))


def test_rmse_is_sqrt_of_pooled_mse_not_a_mean_of_per_lead_rmse():
    # lead 1: one valid point with error 1; lead 2: three valid points with error 3
    pred = torch.zeros(1, 2, 3)
    target = torch.tensor([[[1.0, 0.0, 0.0], [3.0, 3.0, 3.0]]])
    mask = torch.tensor([[[True, False, False], [True, True, True]]])
    ref = torch.full_like(pred, 0.5)
    for with_ref in (None, ref):  # the same meaning with or without a reference
        m = lead_time_metrics(horizon=2, channels=1)
        m.update(pred=pred, target=target, mask=mask, ref=with_ref)
        out = m.compute()
        assert out["rmse"].item() == pytest.approx(math.sqrt((1 + 27) / 4))
        assert out["mse"].item() == pytest.approx(7.0)


def test_skill_vs_persistence_from_the_same_sums_and_nan_when_undefined():
    target = torch.tensor([[[1.0, 1.0], [2.0, 2.0]]])
    pred = target + 0.5
    ref = target.clone()
    ref[:, 1] = 0.0  # persistence perfect at lead 1 (skill undefined), error 2 at lead 2
    m = LeadErrors(horizon=2, channels=1)
    m.update(pred, target, ref=ref)
    out = m.compute()
    assert out["persistence_mse_lead2"].item() == pytest.approx(4.0)
    assert out["skill_lead2"].item() == pytest.approx(1 - 0.25 / 4.0)
    assert math.isnan(out["skill_lead1"].item())  # not a huge negative number
    assert out["skill"].item() == pytest.approx(1 - 0.25 / 2.0)


def test_latitude_weights_follow_weatherbench2():
    w = latitude_weights([-60.0, 0.0, 60.0])
    assert w.mean().item() == pytest.approx(1.0)
    assert torch.allclose(w, torch.tensor([0.5, 1.0, 0.5]) / (2 / 3))


def test_latitude_weighted_rmse_and_mae_for_model_and_persistence():
    # (B, horizon, C, H, W) = (1, 1, 1, 3, 1): errors 1, 2, 3 at latitudes -60, 0, 60
    target = torch.zeros(1, 1, 1, 3, 1)
    pred = torch.tensor([1.0, 2.0, 3.0]).reshape(1, 1, 1, 3, 1)
    w = latitude_weights([-60.0, 0.0, 60.0])
    m = LeadErrors(1, 1, channel_dim=2, lat_weights=w)
    m.update(pred, target, ref=2 * pred)
    out = m.compute()
    wn = w / w.sum()
    assert out["rmse_lat"].item() == pytest.approx(
        float((wn * torch.tensor([1, 4, 9.0])).sum().sqrt())
    )
    assert out["mae_lat"].item() == pytest.approx(float((wn * torch.tensor([1, 2, 3.0])).sum()))
    assert out["persistence_rmse_lat"].item() == pytest.approx(2 * out["rmse_lat"].item())
    assert out["rmse"].item() == pytest.approx(math.sqrt(14 / 3))  # unweighted beside it
    assert out["skill_lat"].item() == pytest.approx(0.75)


def test_physical_units_scale_each_channel():
    target = torch.zeros(2, 1, 2)  # sensors-like (B, horizon, F): channels last
    pred = torch.tensor([[[1.0, 1.0]], [[1.0, 1.0]]])
    m = LeadErrors(1, 2, scale=[10.0, 0.5], names=["t2m", "wind"])
    m.update(pred, target)
    out = m.compute()
    assert out["rmse"].item() == pytest.approx(1.0)  # normalised: pooled over channels
    assert out["rmse_phys_t2m"].item() == pytest.approx(10.0)
    assert out["mae_phys_wind_lead1"].item() == pytest.approx(0.5)
    one = LeadErrors(1, 1, scale=[3.0])
    one.update(pred[..., :1], target[..., :1])
    assert one.compute()["rmse_phys"].item() == pytest.approx(3.0)


def test_collection_clones_per_stage_with_prefixes():
    base = lead_time_metrics(horizon=1, channels=1, thresholds=[0.5])
    val, test = base.clone(prefix="val/"), base.clone(prefix="test/")
    val.update(pred=torch.ones(1, 1, 2), target=torch.zeros(1, 1, 2))
    out = val.compute()
    assert out["val/rmse"].item() == pytest.approx(1.0) and "val/far_t0.5" in out
    test.update(pred=torch.zeros(1, 1, 2), target=torch.zeros(1, 1, 2))
    assert test.compute()["test/rmse"].item() == 0.0  # clones accumulate apart


def test_contingency_hand_values():
    # lead 1: pred events [1,1,0,0], observed [1,0,1,0] -> H=1, F=1, M=1
    pred = torch.tensor([[[2.0, 2.0, 0.0, 0.0]]])
    target = torch.tensor([[[2.0, 0.0, 2.0, 0.0]]])
    c = ContingencyScores([1.0], horizon=1)
    c.update(pred, target)
    s = c.compute()
    assert s["csi_t1"].item() == pytest.approx(1 / 3)
    assert s["pod_t1_lead1"].item() == pytest.approx(1 / 2)
    assert s["far_t1"].item() == pytest.approx(1 / 2)


def test_contingency_undefined_is_nan():
    c = ContingencyScores([10.0], horizon=1)
    c.update(torch.zeros(1, 1, 3), torch.zeros(1, 1, 3))
    assert math.isnan(c.compute()["csi_t10"].item())


def test_gridded_ssim_psnr_perfect_forecast():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 1, 16, 16, generator=g)
    m = lead_time_metrics(3, 1, gridded=True, thresholds=[0.5], data_range=1.0)
    m.update(pred=y + 1e-3, target=y)
    out = m.compute()
    assert out["ssim_lead1"].item() == pytest.approx(1.0, abs=1e-4)
    assert out["csi_t0.5_lead3"].item() == pytest.approx(1.0, abs=0.05)
    assert out["psnr"].item() == pytest.approx(60.0, abs=0.01)  # 20 log10(1 / 1e-3)
    noisy = lead_time_metrics(3, 1, gridded=True, data_range=1.0)
    noisy.update(pred=y + 0.3 * torch.rand(y.shape, generator=g), target=y)
    assert noisy.compute()["ssim_lead1"].item() < 0.99
    assert noisy.compute()["psnr"].item() < out["psnr"].item()


def test_metrics_refuse_shape_mismatch():
    with pytest.raises(ValueError, match="expected prediction and target"):
        LeadErrors(horizon=2, channels=1).update(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3))
