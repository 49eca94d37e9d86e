"""The served pyfunc: a bundle round trip and every bad request answered with a 400-type error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.exceptions import MlflowException

from forecast.data.normalize import Normalizer
from forecast.data.spec import DataSpec
from forecast.models.conv_lstm import ConvLSTMForecaster
from forecast.serving.pyfunc import ForecastModel, model_metadata, save_bundle, signature

CTX, H, GRID = 4, 3, (6, 5)


@pytest.fixture
def model(tmp_path):
    torch.manual_seed(0)
    kwargs = {"in_channels": 2, "horizon": H, "hidden_channels": [4], "kernel_size": 3}
    net = ConvLSTMForecaster(**kwargs)
    norm = Normalizer(("t2m", "u10"), (280.0, 0.0), (10.0, 5.0))
    spec = DataSpec(2, 2, CTX, H, grid=GRID, variables=("t2m", "u10"))
    meta = model_metadata(spec, max_samples=8)
    target = "forecast.models.conv_lstm.ConvLSTMForecaster"
    files = save_bundle(tmp_path, net, target, kwargs, norm, meta)
    m = ForecastModel()
    m.load_files(files)
    return m, net, norm


def raw(b=1, ctx=CTX, c=2, grid=GRID, seed=0):
    r = np.random.default_rng(seed)
    return (280 + 10 * r.standard_normal((b, ctx, c, *grid))).astype(np.float32)


def test_bundle_round_trip_matches_the_net_at_any_batch_size(model):
    m, net, norm = model
    for b in (1, 3):
        x = raw(b)
        y = m.predict(None, x)
        assert y.shape == (b, H, 2, *GRID) and y.dtype == np.float32
        with torch.no_grad():
            z = net(torch.from_numpy(norm.transform(x, axis=2).astype(np.float32))).numpy()
        np.testing.assert_allclose(y, norm.inverse(z, axis=2), rtol=1e-5, atol=1e-4)


def test_signature_has_free_batch_dim(model):
    m, _, _ = model
    sig = signature(m.metadata)
    assert sig.inputs.inputs[0].shape == (-1, CTX, 2, *GRID)
    assert sig.outputs.inputs[0].shape == (-1, H, 2, *GRID)
    assert sig.params.params[0].default == ["t2m", "u10"]


def test_weights_file_is_a_plain_state_dict(tmp_path, model):
    state = torch.load(tmp_path / "weights.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.mark.parametrize(
    ("x", "params", "needle"),
    [
        (raw()[0], None, "shape"),  # no batch dim
        (raw(ctx=CTX + 1), None, "context length must be 4"),
        (raw(c=1), None, "expected 2 variables"),
        (raw(grid=(6, 6)), None, "must have shape"),
        (raw(9), None, "batch size must be 1..8"),
        (np.zeros((0, CTX, 2, *GRID), np.float32), None, "batch size"),
        (np.full((1, CTX, 2, *GRID), "a"), None, "numbers"),
        ([[1.0, 2.0], [3.0]], None, "rectangular"),
        (raw(), {"variables": ["t2m"]}, "missing ['u10']"),
        (raw(), {"variables": ["u10", "t2m"]}, "in this order"),
        ({"a": raw(), "b": raw()}, None, "one input tensor"),
    ],
)
def test_bad_input_is_an_invalid_parameter_error(model, x, params, needle):
    m, _, _ = model
    with pytest.raises(MlflowException) as e:
        m.predict(None, x, params)
    assert e.value.error_code == "INVALID_PARAMETER_VALUE"
    assert e.value.get_http_status_code() == 400
    assert needle in e.value.message


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e39])
def test_non_finite_values_are_refused(model, bad):
    m, _, _ = model
    x = raw().astype(np.float64)
    x[0, 1, 0, 2, 2] = bad  # 1e39 overflows float32 to inf
    with pytest.raises(MlflowException, match="non-finite"):
        m.predict(None, x)


def test_variables_param_equal_to_the_model_is_accepted(model):
    m, _, _ = model
    assert m.predict(None, raw(), {"variables": np.array(["t2m", "u10"])}).shape[0] == 1


def test_sensor_metadata_puts_variables_last():
    spec = DataSpec(7, 1, 96, 24, n_sensors=1, variables=tuple("abcdefg"), targets=("g",))
    meta = model_metadata(spec)
    assert meta["sample_shape"] == [96, 1, 7] and meta["output_shape"] == [24, 1, 1]
    assert meta["channel_axis"] == 3 and meta["targets"] == ["g"]


def test_composed_net_is_rebuilt_from_nested_targets():
    from forecast.serving.pyfunc import build_net

    backbone = {"_target_": "forecast.models.recurrent.StackedRecurrent", "_partial_": True}
    head = {"_target_": "forecast.models.heads.DirectHead", "_partial_": True, "hidden": 0}
    kwargs = {"in_channels": 7, "horizon": 5, "n_sensors": 1, "residual": True}
    net = build_net(
        "forecast.models.sequence.SequenceForecaster",
        {**kwargs, "backbone": {**backbone, "hidden_size": 8}, "head": head},
    )
    assert net(torch.zeros(2, 12, 1, 7)).shape == (2, 5, 1, 7)


def test_nets_that_need_more_than_the_window_are_not_served():
    from forecast.serving.pyfunc import unservable

    spec = DataSpec(1, 1, CTX, H, grid=GRID, variables=("a",))
    net = ConvLSTMForecaster(1, H, [2])
    assert unservable(net, spec) is None
    assert "calendar" in unservable(net, DataSpec(1, 1, CTX, H, grid=GRID, calendar_features=4))

    class NeedsStart(torch.nn.Module):
        def forward(self, x, start):
            return x

    assert "start" in unservable(NeedsStart(), spec)


def test_missing_inputs_only_when_asked_and_filled_as_in_training(model):
    m, net, norm = model
    x = raw()
    x[0, 1, 0, 2, 2] = np.nan
    with pytest.raises(MlflowException, match="allow_missing"):
        m.predict(None, x)
    y = m.predict(None, x, {"allow_missing": True})
    filled = x.copy()
    filled[0, 1, 0, 2, 2] = 280.0  # the variable's offset: 0 in normalised space
    np.testing.assert_allclose(y, m.predict(None, filled), rtol=1e-6)
    x[0, 0, 0, 0, 0] = np.inf
    with pytest.raises(MlflowException, match="1 infinite"):
        m.predict(None, x, {"allow_missing": True})
