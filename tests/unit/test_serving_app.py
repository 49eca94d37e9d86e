"""The ASGI guards around MLflow's scoring app: byte cap (413) and clean 400 messages."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from forecast.serving.app import (
    BodyLimit,
    CleanErrors,
    clean_message,
    default_max_bytes,
    guard,
)
from forecast.serving.validate import bad_request


class Echo:
    """Inner app: answers 200 with the length of the body it read (records that it ran)."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        body, more = b"", True
        while more:
            m = await receive()
            body += m.get("body", b"")
            more = m.get("more_body", False)
        out = json.dumps({"read": len(body)}).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": out})


def call(app, chunks, headers=(), path="/invocations", method="POST"):
    """Run one request through ``app``; return (status, headers, body, messages left unread)."""
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent = []

    async def receive():
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(m):
        sent.append(m)

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers),
             "query_string": b"", "http_version": "1.1", "scheme": "http"}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body, len(queue)


def test_declared_length_over_the_cap_is_413_and_the_app_never_runs():
    inner = Echo()
    status, headers, body, unread = call(
        BodyLimit(inner, 100), [b"x" * 60, b"x" * 60], [(b"content-length", b"120")]
    )
    assert status == 413 and inner.calls == 0
    assert unread == 0  # drained, so the client can read the answer on a live connection
    assert "120 bytes" in json.loads(body)["message"] and "100" in json.loads(body)["message"]
    assert int(headers[b"content-length"]) == len(body)


def test_chunked_body_is_counted_while_streaming_and_stopped_at_the_cap():
    inner = Echo()
    status, _, body, _ = call(BodyLimit(inner, 100), [b"x" * 60, b"x" * 60, b"x" * 60])
    assert status == 413 and inner.calls == 0
    assert "cap of 100 bytes" in json.loads(body)["message"]
    limited = BodyLimit(inner, 100, drain_bytes=150)  # drains no further than drain_bytes
    status, _, _, unread = call(limited, [b"x" * 60] * 6)
    assert status == 413 and inner.calls == 0 and unread == 3


def test_body_at_the_cap_reaches_the_app_whole():
    inner = Echo()
    status, _, body, _ = call(BodyLimit(inner, 120), [b"x" * 60, b"x" * 60])
    assert status == 200 and json.loads(body) == {"read": 120}


def test_bad_content_length_is_400_and_cap_must_be_positive():
    status, _, body, _ = call(BodyLimit(Echo(), 100), [b"x"], [(b"content-length", b"ten")])
    assert status == 400 and "Content-Length" in json.loads(body)["message"]
    with pytest.raises(ValueError, match="positive"):
        BodyLimit(Echo(), 0)


def test_default_cap_admits_max_samples_as_json_and_refuses_more():
    meta = {"max_samples": 4, "sample_shape": [3, 1, 5, 5]}
    x = np.full((4, 3, 1, 5, 5), -0.30000001192092896).tolist()
    full = len(json.dumps({"inputs": x, "params": {"allow_missing": True}}).encode())
    assert full <= default_max_bytes(meta) < 64 * full


def test_clean_message_strips_only_mlflows_prefix():
    raw = "Failed to predict data '[[1. 2.]]'. \nError: batch size must be 1..64 samples, got 65"
    assert clean_message(raw) == "batch size must be 1..64 samples, got 65"
    assert clean_message("input has 1 non-finite values") == "input has 1 non-finite values"


class StubModel:
    """Just enough of a PyFuncModel for MLflow's scoring app: predict refuses NaN."""

    class metadata:  # noqa: N801 (mirrors PyFuncModel.metadata)
        @staticmethod
        def get_input_schema():
            return None

    def predict(self, data, params=None):
        x = np.asarray(data, dtype=float)
        if not np.isfinite(x).all():
            raise bad_request("input has 1 non-finite (NaN or inf) values")
        if (x < 0).any():
            raise RuntimeError("an unexpected failure inside the model")
        return x * 2


@pytest.fixture(scope="module")
def mlflow_app():
    from mlflow.pyfunc import scoring_server

    return guard(scoring_server.init(StubModel()), max_bytes=200)


def test_mlflow_app_keeps_protocol_and_answers_clean_400_and_413(mlflow_app):
    ctype = [(b"content-type", b"application/json")]
    good = json.dumps({"inputs": [1.0, 2.0]}).encode()
    status, _, body, _ = call(mlflow_app, [good], ctype)
    assert status == 200 and json.loads(body) == {"predictions": [2.0, 4.0]}
    status, _, body, _ = call(mlflow_app, [b'{"inputs": [1.0, NaN]}'], ctype)
    answer = json.loads(body)
    assert status == 400 and answer["message"] == "input has 1 non-finite (NaN or inf) values"
    assert answer["error_code"] == "INVALID_PARAMETER_VALUE" and "stack_trace" not in answer
    big = json.dumps({"inputs": [1.0] * 100}).encode()
    status, _, body, _ = call(mlflow_app, [big], [*ctype, (b"content-length", b"%d" % len(big))])
    assert status == 413 and "cap of 200 bytes" in json.loads(body)["message"]
    for path in ("/ping", "/health", "/version"):
        assert call(mlflow_app, [b""], path=path, method="GET")[0] == 200


def test_clean_errors_passes_non_json_4xx_through():
    async def teapot(scope, receive, send):
        await send({"type": "http.response.start", "status": 415, "headers": []})
        await send({"type": "http.response.body", "body": b"not json"})

    status, _, body, _ = call(CleanErrors(teapot), [b""])
    assert status == 415 and body == b"not json"


def test_unexpected_model_error_is_400_without_traceback(mlflow_app):
    ctype = [(b"content-type", b"application/json")]
    status, _, body, _ = call(mlflow_app, [b'{"inputs": [1.0, -2.0]}'], ctype)
    answer = json.loads(body)
    assert status == 400 and "unexpected error while evaluating the model" in answer["message"]
    assert "stack_trace" not in answer and b"Traceback" not in body
    assert b"an unexpected failure inside the model" not in body
