"""Rolling-origin backtest, promotion rule, run plots and the tracking-store reachability check."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest

from forecast.errors import DataError
from forecast.runs.backtest import backtest, rolling_origins
from forecast.runs.promote import beats
from forecast.tracking.mlflow import TrackingUnreachableError, check_reachable, flatten
from forecast.tracking.plots import forecast_frames, skill_curve


def series(t=200, seed=0):
    r = np.random.default_rng(seed)
    return np.cumsum(r.standard_normal((t, 2, 3, 4)), axis=0).astype(np.float32)


def persistence(horizon):
    return lambda x: np.repeat(x[:, -1:], horizon, axis=1)


def test_origins_are_spread_inside_the_held_out_range():
    o = rolling_origins((150, 200), context=12, horizon=6, n_origins=5)
    assert o[0] == 150 and o[-1] == 194 and len(o) == 5
    assert np.all(np.diff(o) > 0)


def test_origins_leave_room_for_context_and_refuse_short_ranges():
    assert rolling_origins((0, 40), context=12, horizon=6, n_origins=3)[0] == 12
    with pytest.raises(DataError, match="too short"):
        rolling_origins((190, 200), context=12, horizon=12, n_origins=3)


def test_perfect_forecast_scores_zero_and_persistence_does_not():
    v = series()
    o = rolling_origins((150, 200), 12, 6, 8)

    def oracle(x):  # looks the truth up by matching the context's last frame
        idx = [int(np.argmin(np.abs(v - xi[-1]).sum(axis=(1, 2, 3)))) for xi in x]
        return np.stack([v[i + 1 : i + 7] for i in idx])

    assert backtest(oracle, v, o, 12, 6, channel_axis=1).score == pytest.approx(0.0, abs=1e-7)
    r = backtest(persistence(6), v, o, 12, 6, channel_axis=1, max_batch=3)
    assert r.score > 0.1 and r.rmse_per_lead.shape == (6,) and r.rmse_per_origin.shape == (8,)
    assert r.rmse_per_lead[-1] > r.rmse_per_lead[0]  # a random walk drifts away


def test_batching_does_not_change_the_score():
    v, o = series(), rolling_origins((150, 200), 12, 6, 7)
    a = backtest(persistence(6), v, o, 12, 6, 1, max_batch=2).score
    b = backtest(persistence(6), v, o, 12, 6, 1, max_batch=32).score
    assert a == pytest.approx(b, rel=1e-6)


def test_missing_values_skip_origins_and_targets():
    v = series()
    o = rolling_origins((150, 200), 12, 6, 8)
    v[o[0] - 10, 0, 0, 0] = np.nan  # only in the first origin's context: origin skipped
    v[o[-1] + 1, 1, 2, 3] = np.nan  # in the last origin's targets: ignored
    r = backtest(persistence(6), v, o, 12, 6, 1)
    assert len(r.origins) == 7 and np.isfinite(r.score)


def test_wrong_forecast_shape_is_reported():
    v, o = series(), rolling_origins((150, 200), 12, 6, 2)
    with pytest.raises(DataError, match="does not match"):
        backtest(lambda x: x[:, :6, :1], v, o, 12, 6, 1)


def test_promotion_needs_the_margin():
    assert beats(0.90, 1.0, margin=0.05)
    assert not beats(0.96, 1.0, margin=0.05)
    assert not beats(1.0, 1.0, margin=0.0)
    assert not beats(float("nan"), 1.0, margin=0.0)
    with pytest.raises(ValueError, match="margin"):
        beats(0.5, 1.0, margin=-0.1)


def test_plots_are_png_with_units_colour_bar_and_leads_in_hours(tmp_path):
    m = {}
    for k in (1, 2, 3):
        m |= {f"test/rmse_phys_lead{k}": k, f"test/persistence_rmse_phys_lead{k}": 2 * k,
              f"test/climatology_rmse_phys_lead{k}": 3.0, f"test/mse_lead{k}": 0.1}  # fmt: skip
        m[f"test/skill_lead{k}"] = 0.5
    figures = {
        "s": skill_curve(m, 3, step_hours=6.0, units="K"),
        "f": forecast_frames(np.zeros((3, 4, 5)), np.ones((3, 4, 5)), "t2m", "K", 6.0),
    }
    errors = figures["s"].axes[0]
    assert errors.get_xlabel() == "lead time (h)" and errors.get_ylabel() == "rmse_phys (K)"
    assert [t.get_text() for t in errors.get_legend().get_texts()] == [
        "model", "climatology", "persistence"]  # fmt: skip
    assert list(errors.get_lines()[0].get_xdata()) == [6.0, 12.0, 18.0]
    frames = figures["f"].axes
    assert len(frames) == 7 and frames[-1].get_ylabel() == "K"  # 2 rows x 3 leads + colour bar
    assert frames[2].get_title() == "truth +18 h"
    for name, fig in figures.items():
        fig.savefig(tmp_path / f"{name}.png")
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        plt.close(fig)
    steps = skill_curve({k: v for k, v in m.items() if "rmse" not in k}, 3)
    assert steps.axes[0].get_xlabel() == "lead time (steps)"
    assert steps.axes[0].get_ylabel() == "mse (normalised)"
    plt.close(steps)
    with pytest.raises(ValueError, match="horizon, H, W"):
        forecast_frames(np.zeros((3, 4, 5)), np.zeros((2, 4, 5)))


def test_unreachable_tracking_server_fails_fast(tmp_path):
    with pytest.raises(TrackingUnreachableError, match="unreachable"):
        check_reachable("http://127.0.0.1:9", timeout=2)  # discard port: nothing listens
    with pytest.raises(TrackingUnreachableError, match="does not exist"):
        check_reachable(f"sqlite:///{tmp_path}/none.db")
    (tmp_path / "there.db").touch()
    check_reachable(f"sqlite:///{tmp_path}/there.db")


def test_flatten_nested_config():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {
        "a.b": 1,
        "a.c.d": [1, 2],
        "e": "x",
    }


def test_gradient_flow_reaches_only_the_steps_the_net_reads(tmp_path):
    import torch

    from forecast.training.gradient_flow import gradient_flow, plot_gradient_flow

    class LastTwo(torch.nn.Module):  # forecasts from the last two steps only
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([0.3, 0.7]))

        def forward(self, x):
            return (self.w[0] * x[:, -2:-1] + self.w[1] * x[:, -1:]).expand(-1, 3, -1)

    x = torch.randn(4, 6, 5, generator=torch.Generator().manual_seed(0))
    y = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(1))
    y[0, 0, 0] = float("nan")
    flow = gradient_flow(LastTwo(), x, y)
    g = flow["norm"].flip(0).numpy()  # oldest step first
    assert flow["what"] == "input" and g.shape == (6,) and np.all(g[:4] == 0) and np.all(g[4:] > 0)
    fig = plot_gradient_flow(flow)
    fig.savefig(tmp_path / "g.png")
    assert (tmp_path / "g.png").read_bytes()[:4] == b"\x89PNG"
