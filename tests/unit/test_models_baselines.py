import numpy as np
import pytest
import torch

from forecast.models.baselines import Climatology, Persistence, SeasonalNaive, seasonal_naive


def test_persistence_and_seasonal_naive_hand_values():
    x = torch.arange(6.0).reshape(1, 6, 1)
    assert Persistence(3)(x).flatten().tolist() == [5.0, 5.0, 5.0]
    # period 2: leads take x[4], x[5], x[4]
    assert seasonal_naive(x, 3, 2).flatten().tolist() == [4.0, 5.0, 4.0]
    with pytest.raises(ValueError, match="period"):
        SeasonalNaive(3, period=8, context=6)


@pytest.mark.parametrize("step_hours,steps", [(1.0, 24), (0.25, 96), (6.0, 4)])
def test_a_season_in_hours_becomes_the_data_s_steps(step_hours, steps):
    net = SeasonalNaive(3, context=96, period_hours=24, step_hours=step_hours)
    assert net.period == steps
    x = torch.arange(96.0).reshape(1, 96, 1)
    assert net(x).flatten().tolist() == [96.0 - steps, 97.0 - steps, 98.0 - steps]


@pytest.mark.parametrize(
    "hours,step,match",
    [(24, None, "regular time step"), (None, 1.0, "give period"), (24, 5.0, "whole number")],
)
def test_a_season_in_hours_that_fits_no_whole_step_count_is_refused(hours, step, match):
    with pytest.raises(ValueError, match=match):
        SeasonalNaive(3, context=96, period_hours=hours, step_hours=step)


def test_climatology_month_hour_from_train_only():
    times = np.array(
        ["2020-01-01T00", "2020-01-01T12", "2020-01-02T00", "2020-01-02T12", "2020-02-01T00",
         "2020-01-03T00"], dtype="datetime64[h]",
    )  # fmt: skip
    values = np.array([1.0, 10.0, 3.0, 20.0, 100.0, 999.0])[:, None]
    clim = Climatology.fit(values, times, train=(0, 4), context=1, horizon=2)
    # window starting at row 1: targets are rows 2 (Jan 00h) and 3 (Jan 12h)
    out = clim(torch.zeros(1, 1, 1), torch.tensor([1]))
    assert out.flatten().tolist() == pytest.approx([2.0, 15.0])
    # row 4 (Feb 00h) never seen in train: falls back to the train mean 8.5, not 100
    out = clim(torch.zeros(1, 1, 1), torch.tensor([3]))
    assert out.flatten().tolist() == pytest.approx([8.5, 2.0])


def test_climatology_day_of_year_over_several_years():
    times = np.arange("2018-01-01", "2021-01-01", dtype="datetime64[D]")
    doy = np.array([t.astype(object).timetuple().tm_yday for t in times], dtype=float)
    clim = Climatology.fit(doy[:, None], times, train=(0, len(times)), context=1, horizon=1)
    assert clim.table.shape[0] == 366
    out = clim(torch.zeros(1, 1, 1), torch.tensor([40]))  # target row 41 = Feb 11th
    assert out.item() == pytest.approx(42.0)


def test_climatology_fit_baseline_checks_targets_and_finds_them_among_inputs():
    from forecast.data.spec import DataSpec
    from forecast.data.window_module import TargetSeries

    times = np.arange("2020-01-01T00", "2020-01-03T00", 6, dtype="datetime64[h]")  # 8 rows
    values = np.arange(8.0)[:, None, None] * np.ones((1, 2, 1))  # (N, S=2, F_out=1)
    series = TargetSeries(values, times, train=(0, 8), step=1)
    spec = DataSpec(2, 1, 2, 1, n_sensors=2, variables=("a", "b"), targets=("b",))
    clim = Climatology.fit_baseline(series, spec)
    assert clim.target_index.tolist() == [1]
    # window at row 0: target row 2 is 12h; training rows at 12h are 2 and 6 -> mean 4
    assert clim(torch.zeros(1, 2, 2, 2), torch.tensor([0])).flatten().tolist() == [4.0, 4.0]
    wrong = DataSpec(2, 3, 2, 1, n_sensors=2, variables=("a", "b"), targets=("a", "b", "c"))
    with pytest.raises(ValueError, match="expects 3 target variables"):
        Climatology.fit_baseline(series, wrong)


def test_seasonal_naive_forecasts_only_the_target_features_of_sensor_inputs():
    # (B, T, sensors, features): features [a, pm, b]; the target is pm, period 2
    x = torch.arange(24.0).reshape(1, 4, 2, 3)
    net = SeasonalNaive(3, period=2, context=4, variables=["a", "pm", "b"], targets=["pm"])
    out = net(x)
    assert out.shape == (1, 3, 2, 1)
    # leads take steps 2, 3, 2 of feature 1 at each sensor
    assert out[0, :, 0, 0].tolist() == [x[0, 2, 0, 1], x[0, 3, 0, 1], x[0, 2, 0, 1]]
    both = SeasonalNaive(3, 2, 4, variables=["a", "b"], targets=["a", "b"])
    assert both(x[..., :2]).shape[-1] == 2
    with pytest.raises(ValueError, match=r"targets \['no2'\] are not among the inputs"):
        SeasonalNaive(3, 2, 4, variables=["a", "pm"], targets=["no2"])
