import numpy as np
import pytest

from benchmarks.grid_ridge import rmse_lat, windows


def test_windows_keep_their_targets_in_the_split_and_read_back_into_the_previous_one():
    times = np.arange("2020-01-01T00", "2020-01-03T00", 6, dtype="datetime64[h]")  # 8 steps
    field = np.arange(8, dtype=float)[:, None, None] * np.ones((1, 2, 3))
    x, last, y = windows(field, times, ("2020-01-02", "2020-01-03"), context=3, horizon=2)
    # the split holds steps 4..7; targets t+1, t+2 inside it: origins 3, 4, 5
    assert x.shape == (3, 3 * 6) and last.shape == (3, 6) and y.shape == (3, 2, 6)
    assert last[:, 0].tolist() == [3.0, 4.0, 5.0]
    assert x[0].reshape(3, 6)[:, 0].tolist() == [1.0, 2.0, 3.0]  # context reaches into step 1
    assert y[:, :, 0].tolist() == [[4.0, 5.0], [5.0, 6.0], [6.0, 7.0]]


def test_latitude_weighted_rmse_weights_rows():
    truth = np.zeros((1, 1, 2, 2))
    pred = np.array([[[[1.0, 1.0], [0.0, 0.0]]]])  # error on the first row only
    weights = np.array([1.5, 0.5])
    assert rmse_lat(pred, truth, weights)[0] == pytest.approx(np.sqrt(1.5 / 2))
