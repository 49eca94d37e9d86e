"""A net trained on spatial patches serves (and batch-forecasts) the whole grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forecast.data.datamodule import GridDataModule
from forecast.data.normalize import Normalizer
from forecast.data.sources import SyntheticGridSource
from forecast.models.baselines import Persistence
from forecast.models.conv_lstm import ConvLSTMForecaster
from forecast.models.step_rnn import StepRNN
from forecast.serving.pyfunc import ForecastModel, model_metadata, save_bundle
from forecast.serving.tiles import forecast_tiled, tile_starts

CTX, H = 4, 2


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    path = tmp_path_factory.mktemp("patches") / "grid.zarr"
    source = SyntheticGridSource(str(path), n_times=40, n_lat=16, n_lon=12, n_blobs=2)
    dm = GridDataModule(source, ["field"], CTX, H, patch=[8, 8])
    return dm.describe()


def bundle(tmp_path, spec, target, kwargs):
    torch.manual_seed(0)
    module, _, name = target.rpartition(".")
    net = getattr(__import__(module, fromlist=[name]), name)(**kwargs).eval()
    meta = model_metadata(spec, max_samples=4)
    files = save_bundle(tmp_path, net, target, kwargs, Normalizer(("field",), (5.0,), (2.0,)), meta)
    m = ForecastModel()
    m.load_files(files)
    return m, net


def raw(grid, b=2):
    r = np.random.default_rng(0)
    return (5 + 2 * r.standard_normal((b, CTX, 1, *grid))).astype(np.float32)


def test_spec_keeps_the_patch_for_the_net_and_the_whole_grid_for_serving(spec):
    assert spec.grid == (8, 8) and spec.full_grid == (16, 12)
    meta = model_metadata(spec)
    assert meta["sample_shape"] == [CTX, 1, 16, 12] and meta["output_shape"] == [H, 1, 16, 12]
    assert meta["patch"] == [8, 8] and meta["grid"] == [16, 12]


def test_grid_bound_net_serves_the_whole_grid_by_tiles(tmp_path, spec):
    kwargs = {"in_channels": 1, "horizon": H, "hidden_size": 4, "grid": list(spec.grid)}
    m, net = bundle(tmp_path, spec, "forecast.models.step_rnn.StepRNN", kwargs)
    assert isinstance(net, StepRNN) and m.tiled
    assert m.runner.kind == "eager" and m.runner.reason == "served by tiles"
    x = raw((16, 12))
    y = m.predict(None, x)
    assert y.shape == (2, H, 1, 16, 12) and np.isfinite(y).all()
    z = torch.from_numpy((x - 5) / 2)
    with torch.no_grad():  # columns 0-3 of the top-left tile are covered by no other tile
        corner = net(z[..., :8, :8]).numpy() * 2 + 5
    np.testing.assert_allclose(y[..., :8, :4], corner[..., :4], rtol=1e-5, atol=1e-5)
    assert not np.allclose(y[..., :8, 4:8], corner[..., 4:8])  # overlap: mean of two tiles


def test_convolutional_net_serves_the_whole_grid_in_one_pass(tmp_path, spec):
    kwargs = {"in_channels": 1, "horizon": H, "hidden_channels": [4], "patch": 2}
    m, net = bundle(tmp_path, spec, "forecast.models.conv_lstm.ConvLSTMForecaster", kwargs)
    assert isinstance(net, ConvLSTMForecaster) and not m.tiled
    assert m.runner.kind == "torchscript"  # the whole grid through the traced graph
    x = raw((16, 12))
    with torch.no_grad():
        whole = net(torch.from_numpy((x - 5) / 2)).numpy() * 2 + 5
    np.testing.assert_allclose(m.predict(None, x), whole, rtol=1e-5, atol=1e-5)


def test_tiles_cover_a_grid_that_is_not_a_multiple_of_the_patch():
    assert tile_starts(12, 8) == [0, 4] and tile_starts(16, 8) == [0, 8]
    with pytest.raises(ValueError, match="cannot be tiled"):
        tile_starts(6, 8)
    x = torch.randn(3, CTX, 2, 16, 12, generator=torch.Generator().manual_seed(1))
    y = forecast_tiled(Persistence(H, grid=(8, 8)), x, (8, 8), max_batch=5)
    torch.testing.assert_close(y, x[:, -1:].expand(-1, H, -1, -1, -1))
