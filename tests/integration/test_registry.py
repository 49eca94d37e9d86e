"""Registry and champion promotion on a real sqlite store, with hand-built nets (no training).

The data are a frozen field (every pixel constant in time), so persistence is the perfect forecast:
a residual ConvLSTM with a zero head is exact, one with a head bias is worse by a known amount.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forecast.data.normalize import Normalizer
from forecast.data.spec import DataSpec
from forecast.errors import ForecastError
from forecast.models.conv_lstm import ConvLSTMForecaster
from forecast.runs.promote import promote_version
from forecast.serving.packaging import log_forecast_model
from forecast.serving.pyfunc import model_metadata
from forecast.tracking.registry import client_for, load_version, register_if_finite

CTX, H, GRID, NAME = 4, 2, (4, 4), "forecast-test"
KWARGS = {"in_channels": 1, "horizon": H, "hidden_channels": [2], "kernel_size": 3}
TARGET = "forecast.models.conv_lstm.ConvLSTMForecaster"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("registry")
    uri = f"sqlite:///{tmp}/mlflow.db"  # one store per module: creating one costs ~8 s
    client = client_for(uri)
    exp = client.create_experiment("registry-test", artifact_location=(tmp / "art").as_uri())
    field = np.random.default_rng(0).normal(280, 5, (1, *GRID)).astype(np.float32)
    values = np.repeat(field[None], 60, axis=0)  # (T, C, H, W), constant in time
    return uri, client, exp, values


def net_with_bias(bias: float) -> ConvLSTMForecaster:
    torch.manual_seed(0)
    net = ConvLSTMForecaster(**KWARGS)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(bias)
    return net


def log_and_register(store, net, metric=0.5):
    uri, client, exp, values = store
    run = client.create_run(exp)
    norm = Normalizer(("field",), (280.0,), (5.0,))
    meta = model_metadata(DataSpec(1, 1, CTX, H, grid=GRID, variables=("field",)), max_samples=16)
    example = values[None, :CTX]
    _, model_id = log_forecast_model(uri, run.info.run_id, net, TARGET, KWARGS, norm, meta, example)
    finite = all(bool(torch.isfinite(p).all()) for p in net.parameters())
    mv = register_if_finite(client, NAME, model_id, run.info.run_id, {"val/rmse": metric}, finite)
    return mv, run.info.run_id


def promote(store, version, margin=0.05):
    uri, _, _, values = store
    return promote_version(uri, NAME, version, values, (40, 60), 1, n_origins=4, margin=margin)


def test_champion_moves_only_on_a_clear_win_and_is_idempotent(store):
    uri, client, _, _ = store
    worse, run1 = log_and_register(store, net_with_bias(0.4))
    d1 = promote(store, worse.version)
    assert d1.promoted and "no 'champion'" in d1.reason and d1.candidate_score > 0.3

    exact, run2 = log_and_register(store, net_with_bias(0.0))
    d2 = promote(store, exact.version)
    assert d2.promoted and d2.champion_version == worse.version
    assert d2.candidate_score < 1e-5 and d2.champion_score == pytest.approx(d1.candidate_score)
    assert client.get_model_version_by_alias(NAME, "champion").version == exact.version

    again = promote(store, exact.version)
    assert not again.promoted and "already holds" in again.reason

    worse2, run3 = log_and_register(store, net_with_bias(0.4))
    d3 = promote(store, worse2.version)
    assert not d3.promoted and "does not beat" in d3.reason
    assert client.get_model_version_by_alias(NAME, "champion").version == exact.version

    # both scores and the decision are on the candidate's run and version
    r3 = client.get_run(run3)
    assert r3.data.tags["promotion/decision"] == "kept"
    assert r3.data.metrics["promotion/champion_backtest"] == pytest.approx(d3.champion_score)
    assert "promotion" in client.get_model_version(NAME, worse2.version).tags
    assert client.get_run(run2).data.tags["promotion/decision"] == "promoted"


def test_equal_score_within_margin_does_not_flap(store):
    champion = store[1].get_model_version_by_alias(NAME, "champion").version
    twin, _ = log_and_register(store, net_with_bias(0.0))
    d = promote(store, twin.version, margin=0.0)
    assert not d.promoted  # equal, not better
    assert store[1].get_model_version_by_alias(NAME, "champion").version == champion


def test_non_finite_model_is_not_registered(store):
    net = net_with_bias(0.0)
    with torch.no_grad():
        net.head.bias.fill_(float("nan"))
    mv, run_id = log_and_register(store, net)
    assert mv is None
    assert "non-finite weights" in store[1].get_run(run_id).data.tags["registry/skipped"]
    mv, run_id = log_and_register(store, net_with_bias(0.0), metric=float("nan"))
    assert mv is None and "val/rmse" in store[1].get_run(run_id).data.tags["registry/skipped"]


def test_champion_loads_and_a_missing_alias_is_a_clear_error(store):
    uri, _, _, values = store
    model = load_version(uri, NAME, "champion")
    y = model.predict(values[None, :CTX].repeat(3, axis=0))
    np.testing.assert_allclose(y, values[None, :H].repeat(3, axis=0), atol=1e-3)
    with pytest.raises(ForecastError, match="no version or alias 'nope'.*champion"):
        load_version(uri, NAME, "nope")
    with pytest.raises(ForecastError, match="'unknown' does not exist"):
        load_version(uri, "unknown", "champion")


def test_server_preflight_names_what_is_wrong(store):
    from forecast.serving.server import preflight

    uri = store[0]
    assert preflight(f"models:/{NAME}@champion", uri).isdigit()
    assert preflight(f"models:/{NAME}/1", uri) == "1"
    with pytest.raises(ForecastError, match="no version or alias 'gone'"):
        preflight(f"models:/{NAME}@gone", uri)
    with pytest.raises(ForecastError, match="unreachable"):
        preflight(f"models:/{NAME}@champion", "http://127.0.0.1:9")
    with pytest.raises(ForecastError, match="expected models:/"):
        preflight("runs:/abc/model", uri)


def test_server_cli_refuses_a_missing_alias_and_a_bad_cap_in_one_line(store, monkeypatch, capsys):
    from pipelines.serve import main

    log_and_register(store, net_with_bias(0.0))  # the model exists, whatever ran before
    capsys.readouterr()  # drop what registering printed
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store[0])
    with pytest.raises(SystemExit) as e:
        main([f"models:/{NAME}@gone", "--port", "1"])
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]  # beside MLflow's log lines
    assert e.value.code == 2 and len(errors) == 1 and "gone" in errors[0], err
    assert "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        main([f"models:/{NAME}@champion", "--max-body-bytes", "0"])
    assert e.value.code == 2 and "--max-body-bytes" in capsys.readouterr().err
