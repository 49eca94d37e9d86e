"""/invocations: good requests answered as MLflow's app answers them; bad ones 4xx, named."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import mlflow
import numpy as np
import pytest
import torch

from forecast.data.normalize import Normalizer
from forecast.data.spec import DataSpec
from forecast.models.conv_lstm import ConvLSTMForecaster
from forecast.serving import model_code
from forecast.serving.app import build_app, default_max_bytes
from forecast.serving.fast_path import Invocations, encode_predictions, parse_request
from forecast.serving.pyfunc import model_metadata, save_bundle, signature

CTX, H, GRID = 4, 3, (6, 4)
TARGET = "forecast.models.conv_lstm.ConvLSTMForecaster"


class Counting:
    """A PyFuncModel wrapper that counts predictions (a request is predicted once)."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def unwrap_python_model(self):
        return self.model.unwrap_python_model()

    def __getattr__(self, name):
        return getattr(self.model, name)

    def predict(self, data, params=None):
        self.calls += 1
        return self.model.predict(data, params=params)


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """(MLflow's own scoring app, our app, the counting model behind ours)."""
    from mlflow.pyfunc import scoring_server

    tmp = tmp_path_factory.mktemp("fast")
    torch.manual_seed(0)
    kwargs = {"in_channels": 2, "horizon": H, "hidden_channels": [4], "kernel_size": 3}
    spec = DataSpec(2, 2, CTX, H, grid=GRID, variables=("t2m", "u10"))
    meta = model_metadata(spec, max_samples=8)
    norm = Normalizer(("t2m", "u10"), (280.0, 0.0), (10.0, 5.0))
    files = save_bundle(tmp / "b", ConvLSTMForecaster(**kwargs), TARGET, kwargs, norm, meta)
    mlflow.pyfunc.save_model(
        tmp / "model", python_model=model_code.__file__, artifacts=files,
        signature=signature(meta), pip_requirements=["forecast"],
    )  # fmt: skip
    model = mlflow.pyfunc.load_model(str(tmp / "model"))
    counting = Counting(model)
    return scoring_server.init(model), build_app(counting, default_max_bytes(meta)), counting


def call(app, body: bytes, ctype: bytes | None = b"application/json"):
    """POST ``body`` to /invocations of ``app``; return (status, body bytes)."""
    queue = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(m):
        sent.append(m)

    headers = [(b"content-length", b"%d" % len(body))]
    if ctype is not None:
        headers.append((b"content-type", ctype))
    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": headers,
             "query_string": b"", "http_version": "1.1", "scheme": "http"}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m.get("body"))


def raw(b=1, ctx=CTX, seed=0):
    r = np.random.default_rng(seed)
    return (280 + 10 * r.standard_normal((b, ctx, 2, *GRID))).astype(np.float32)


def body(x, key="inputs", **extra) -> bytes:
    return json.dumps({key: np.asarray(x).tolist(), **extra}).encode()


GOOD = {
    "one sample": body(raw()),
    "batch of 3": body(raw(3, seed=1)),
    "whole numbers": body(np.rint(raw()).astype(int)),
    "variables param": body(raw(), params={"variables": ["t2m", "u10"]}),
    "instances": body(raw(seed=3), key="instances"),
}


@pytest.mark.parametrize("case", sorted(GOOD))
def test_good_requests_get_mlflows_answer_from_one_predict(apps, case):
    ref, ours, counting = apps
    before = counting.calls
    s_ref, b_ref = call(ref, GOOD[case])
    s_ours, b_ours = call(ours, GOOD[case], b"application/json; charset=utf-8")
    assert s_ref == s_ours == 200, b_ref[:300]
    assert counting.calls == before + 1  # predicted once, never replayed
    assert json.loads(b_ours) == json.loads(b_ref)  # the same float values, element by element


def test_no_content_type_is_json(apps):
    _, ours, _ = apps
    assert call(ours, GOOD["one sample"], None)[0] == 200


def nan_body(token: str) -> bytes:
    x = raw().tolist()
    x[0][1][0][2][2] = float("nan")
    return json.dumps({"inputs": x}).replace("NaN", token).encode()


# (body, content type, status, words the message must contain)
BAD = {
    "malformed json": (b'{"inputs": [[1, 2', None, 400, "not valid JSON"),
    "not a dict": (b"[1, 2, 3]", None, 400, "must be a JSON object"),
    "deep nesting": (b"[" * 5000 + b"]" * 5000, None, 400, "nests deeper than 64"),
    "deep NaN body": (b'{"inputs": ' + b"[" * 3000 + b"NaN" + b"]" * 3000 + b"}", None, 400,
                      "nests deeper"),
    "unknown key": (body(raw(), foo=1), None, 400, "unknown top-level key(s) ['foo']"),
    "two inputs": (body(raw(), instances=[1]), None, 400, "exactly one of"),
    "no inputs": (b'{"params": {}}', None, 400, "exactly one of"),
    "table": (b'{"dataframe_split": {"columns": ["a"], "data": [[1]]}}', None, 400, "not a table"),
    "params not a dict": (body(raw(), params=[1]), None, 400, "params must be a JSON object"),
    "wrong context": (body(raw(ctx=CTX - 1)), None, 400, "shape"),
    "wrong shape": (body([[1.0, 2.0]]), None, 400, "shape"),
    "ragged": (b'{"inputs": [[1.0, 2.0], [3.0]]}', None, 400, "not a rectangular array"),
    "scalar": (b'{"inputs": 3}', None, 400, "must be a (nested) list"),
    "nan": (nan_body("NaN"), None, 400, "non-finite"),
    "inf": (nan_body("Infinity"), None, 400, "non-finite"),
    "overflow": (nan_body("1e39"), None, 400, "non-finite"),
    "strings": (json.dumps({"inputs": [[["a", "b"]]]}).encode(), None, 400, "must be numbers"),
    "too many samples": (body(raw(9)), None, 400, "batch size must be 1..8"),
    "missing variables": (body(raw(), params={"variables": ["t2m"]}), None, 400, "missing"),
    "unknown param": (body(raw(), params={"nope": 1}), None, 400, "nope"),
    "csv": (b"a,b\n1,2\n", b"text/csv", 415, "must be application/json"),
    "text": (GOOD["one sample"], b"text/plain", 415, "must be application/json"),
    "over the byte cap": (body(raw(40)), None, 413, "over the server's cap"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_requests_get_4xx_with_a_message_naming_what_was_wrong(apps, case):
    _, ours, _ = apps
    payload, ctype, status, words = BAD[case]
    s, b = call(ours, payload, ctype or b"application/json")
    answer = json.loads(b)
    assert s == status, (s, b[:300])
    assert words in answer["message"], answer["message"]
    assert set(answer) == {"error_code", "message"} and b"Traceback" not in b


class Failing:
    """A model that fails unexpectedly, or slowly."""

    def __init__(self, sleep: float = 0.0) -> None:
        self.sleep = sleep

    def predict(self, data, params=None):
        if self.sleep:
            time.sleep(self.sleep)
            return np.zeros(1, np.float32)
        raise RuntimeError("secret internal detail")


def test_unexpected_model_error_is_500_logged_with_traceback_not_sent(caplog):
    handler = Invocations(Failing(), (1,))
    with caplog.at_level(logging.ERROR, logger="forecast.serving"):
        status, out = asyncio.run(handler("application/json", b'{"inputs": [[1.0]]}'))
    assert status == 500 and b"secret internal detail" not in out and b"Traceback" not in out
    assert "secret internal detail" in caplog.text and caplog.records[0].exc_info is not None


def test_slow_forecast_is_503_after_the_deadline():
    handler = Invocations(Failing(sleep=0.5), (1,), timeout=0.05)
    t0 = time.perf_counter()
    status, out = asyncio.run(handler(None, b'{"inputs": [[1.0]]}'))
    assert status == 503 and "not done within 0.05 s" in json.loads(out)["message"]
    assert time.perf_counter() - t0 < 0.45


def test_parse_request_decodes_the_plain_tensor_form():
    x = raw(2)
    got, params = parse_request(body(x), (CTX, 2, *GRID))
    assert params is None and got.dtype == np.float32
    np.testing.assert_array_equal(got, x)
    named, _ = parse_request(json.dumps({"inputs": {"x": x.tolist()}}).encode(), x.shape[1:])
    np.testing.assert_array_equal(named, x)


def test_encoded_predictions_read_back_as_the_same_numbers():
    y = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32) * 1e-6
    assert json.loads(encode_predictions(y))["predictions"] == y.tolist()
    nan = np.array([1.0, np.nan], np.float32)  # not JSON for orjson: MLflow's encoder writes it
    assert encode_predictions(nan) == b'{"predictions": [1.0, NaN]}'
