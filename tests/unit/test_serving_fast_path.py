"""The fast /invocations path answers as MLflow's scoring app does, for good and bad requests."""

from __future__ import annotations

import asyncio
import json

import mlflow
import numpy as np
import pytest
import torch

from forecast.data.normalize import Normalizer
from forecast.data.spec import DataSpec
from forecast.models.conv_lstm import ConvLSTMForecaster
from forecast.serving import model_code
from forecast.serving.app import default_max_bytes, guard
from forecast.serving.fast_path import encode_predictions, parse_request
from forecast.serving.pyfunc import model_metadata, save_bundle, signature

CTX, H, GRID = 4, 3, (6, 4)
TARGET = "forecast.models.conv_lstm.ConvLSTMForecaster"


class Counting:
    """Inner app wrapper that counts the requests it had to answer."""

    def __init__(self, app):
        self.app, self.calls = app, 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        await self.app(scope, receive, send)


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    """(MLflow's app guarded as before, the same with the fast path, its inner-app counter)."""
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
    cap = default_max_bytes(meta)
    inner = Counting(scoring_server.init(model))
    fast = guard(inner, cap, model, meta["sample_shape"])
    return guard(scoring_server.init(model), cap), fast, inner


def call(app, body: bytes, ctype: bytes = b"application/json"):
    """POST ``body`` to /invocations of ``app``; return (status, body bytes)."""
    queue = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(m):
        sent.append(m)

    headers = [(b"content-type", ctype), (b"content-length", b"%d" % len(body))]
    scope = {"type": "http", "method": "POST", "path": "/invocations", "headers": headers,
             "query_string": b"", "http_version": "1.1", "scheme": "http"}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m.get("body"))


def raw(b=1, ctx=CTX, seed=0):
    r = np.random.default_rng(seed)
    return (280 + 10 * r.standard_normal((b, ctx, 2, *GRID))).astype(np.float32)


def body(x, **extra) -> bytes:
    return json.dumps({"inputs": np.asarray(x).tolist(), **extra}).encode()


GOOD = {
    "one sample": body(raw()),
    "batch of 3": body(raw(3, seed=1)),
    "whole numbers": body(np.rint(raw()).astype(int)),
    "variables param": body(raw(), params={"variables": ["t2m", "u10"]}),
    "charset": body(raw(seed=2)),
}


@pytest.mark.parametrize("case", sorted(GOOD))
def test_good_requests_take_the_fast_path_and_get_mlflows_answer(apps, case):
    ref, fast, inner = apps
    before = inner.calls
    ctype = b"application/json; charset=utf-8" if case == "charset" else b"application/json"
    s_ref, b_ref = call(ref, GOOD[case], ctype)
    s_fast, b_fast = call(fast, GOOD[case], ctype)
    assert s_ref == s_fast == 200, b_ref[:300]
    assert inner.calls == before  # answered without MLflow's app
    assert json.loads(b_fast) == json.loads(b_ref)  # the same float values, element by element


def nan_body(token: str) -> bytes:
    x = raw().tolist()
    x[0][1][0][2][2] = float("nan")
    return json.dumps({"inputs": x}).replace("NaN", token).encode()


BAD = {
    "malformed json": b'{"inputs": [[1, 2',
    "not a dict": b"[1, 2, 3]",
    "wrong context": body(raw(ctx=CTX - 1)),
    "wrong shape": body([[1.0, 2.0]]),
    "ragged": b'{"inputs": [[1.0, 2.0], [3.0]]}',
    "nan": nan_body("NaN"),
    "inf": nan_body("Infinity"),
    "overflow": nan_body("1e39"),
    "strings": json.dumps({"inputs": [[["a", "b"]]]}).encode(),
    "too many samples": body(raw(9)),
    "missing variables": body(raw(), params={"variables": ["t2m"]}),
    "other keys": body(raw(), instances=[1]),
    "over the byte cap": body(raw(40)),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_requests_get_the_same_status_and_message_as_mlflows_path(apps, case):
    ref, fast, _ = apps
    s_ref, b_ref = call(ref, BAD[case])
    s_fast, b_fast = call(fast, BAD[case])
    assert s_ref == s_fast and 400 <= s_fast < 500, (s_ref, s_fast, b_fast[:300])
    assert json.loads(b_fast) == json.loads(b_ref)
    assert b"Traceback" not in b_fast and b"stack_trace" not in b_fast


def test_other_content_types_go_to_mlflow(apps):
    ref, fast, inner = apps
    before = inner.calls
    s_fast, b_fast = call(fast, GOOD["one sample"], b"text/plain")
    assert inner.calls == before + 1
    assert (s_fast, b_fast) == call(ref, GOOD["one sample"], b"text/plain")
    assert s_fast == 415


def test_parse_request_accepts_only_the_plain_tensor_form():
    x = raw(2)
    got = parse_request(body(x), (CTX, 2, *GRID))
    assert got is not None and got[1] is None
    np.testing.assert_array_equal(got[0], x)
    assert got[0].dtype == np.float32
    assert parse_request(body(x), (CTX + 1, 2, *GRID)) is None
    assert parse_request(body([[True]]), (1,)) is None
    assert parse_request(b'{"inputs": [], "params": null}', (1,)) is None
    assert parse_request(b'{"inputs": [[1]], "params": [1]}', (1,)) is None


def test_encoded_predictions_read_back_as_the_same_numbers():
    y = np.random.default_rng(0).standard_normal((2, 3, 4)).astype(np.float32) * 1e-6
    assert json.loads(encode_predictions(y))["predictions"] == y.tolist()
    nan = np.array([1.0, np.nan], np.float32)  # not JSON for orjson: MLflow's encoder writes it
    assert encode_predictions(nan) == b'{"predictions": [1.0, NaN]}'
