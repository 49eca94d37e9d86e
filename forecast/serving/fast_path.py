"""A fast ``POST /invocations`` for the project's pyfunc; every other request is MLflow's.

MLflow's scoring app spends more on JSON than on the forecast for a gridded model: its parser
deep-copies the decoded lists and converts them against the signature (10.7 ms for one 12x32x32
window), and its encoder writes the answer through ``json`` (5.5 ms); the ConvLSTM itself takes
15-17 ms at one thread. This middleware answers the plain, good request itself:

- body ``{"inputs": <numbers>, "params": {...}?}`` with ``Content-Type: application/json``, numbers
  that form one rectangular int/float array shaped ``(B, *sample_shape)``;
- decoded by ``orjson`` and ``numpy``, predicted by the same loaded ``PyFuncModel.predict`` (the
  signature's and the pyfunc's own checks run as in MLflow's path), encoded by ``orjson``.

Anything else (another format, content type or shape, JSON that ``orjson`` refuses, e.g. ``NaN``
literals, and every request the model refuses) is replayed to the inner app, MLflow's scoring
app, so errors and their messages are MLflow's path's by construction. Forecasts are the same
float32 values either way; the JSON text may differ in float spelling (``1e-05`` vs ``1e-5``).
Predictions run on one worker thread, one at a time, so they never compete for the intra-op
threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from io import StringIO
from typing import Any

import numpy as np
import orjson

from forecast.serving.app import ASGIApp, Message, Receive, Scope, Send

JSON_TYPES = ("application/json", "application/json;charset=utf-8")


def parse_request(body: bytes, sample_shape: Sequence[int]) -> tuple[np.ndarray, Any] | None:
    """Decode a plain ``{"inputs": ..., "params": ...}`` request, or None to leave it to MLflow.

    Args:
        body: the raw request body.
        sample_shape: one sample's shape; the input must be ``(B, *sample_shape)``, ``B >= 1``.

    Returns:
        ``(x, params)`` with ``x`` float32 ``(B, *sample_shape)`` and ``params`` as sent (a dict
        or None), or None when the request is not one this path answers.
    """
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict) or "inputs" not in doc or not set(doc) <= {"inputs", "params"}:
        return None
    params = doc.get("params")
    if not isinstance(doc["inputs"], list) or not (params is None or isinstance(params, dict)):
        return None
    try:
        x = np.asarray(doc["inputs"])
    except ValueError:  # ragged nesting
        return None
    if x.dtype.kind not in "fi" or x.ndim < 1 or x.shape[0] < 1:
        return None
    if tuple(x.shape[1:]) != tuple(int(s) for s in sample_shape):
        return None
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, which the model refuses
        return x.astype(np.float32), params


def encode_predictions(y: Any) -> bytes:
    """``{"predictions": y}`` as MLflow's scoring server writes it, in fewer milliseconds.

    Finite float arrays go through ``orjson`` as float64 (the same numbers MLflow's ``tolist``
    gives); anything else (NaN, other types) through MLflow's own encoder.
    """
    if isinstance(y, np.ndarray) and y.dtype.kind == "f" and np.isfinite(y).all():
        return orjson.dumps(
            {"predictions": y.astype(np.float64)}, option=orjson.OPT_SERIALIZE_NUMPY
        )
    from mlflow.pyfunc.scoring_server import predictions_to_json

    out = StringIO()
    predictions_to_json(y, out)
    return out.getvalue().encode()


def _is_json(scope: Scope) -> bool:
    ctype = dict(scope.get("headers") or []).get(b"content-type", b"")
    return ctype.decode("latin-1").replace(" ", "").lower() in JSON_TYPES


class FastInvocations:
    """ASGI middleware: answer good plain-JSON ``/invocations`` requests without MLflow's parser.

    Args:
        app: the inner app (MLflow's scoring app, possibly wrapped); it gets every request this
            path does not answer, with the body replayed unchanged.
        model: the loaded ``PyFuncModel`` (its ``predict(x, params=...)`` is called).
        sample_shape: one sample's shape from the pyfunc's metadata.
    """

    def __init__(self, app: ASGIApp, model: Any, sample_shape: Sequence[int]) -> None:
        self.app, self.model = app, model
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="forecast-predict")

    def _answer(self, body: bytes) -> bytes | None:
        """Runs on the worker thread: the JSON answer, or None for the inner app to answer."""
        parsed = parse_request(body, self.sample_shape)
        if parsed is None:
            return None
        x, params = parsed
        try:
            y = self.model.predict(x, params=params)
        except Exception:  # noqa: BLE001 (refused or failed: MLflow's path answers it its way)
            return None
        return encode_predictions(y)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer a good request here; replay anything else to the inner app."""
        if not (
            scope["type"] == "http"
            and scope.get("path") == "/invocations"
            and scope.get("method") == "POST"
            and _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        parts: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(parts)
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(self.pool, self._answer, body)
        if answer is None:
            await self.app(scope, _replay(body, receive), send)
            return
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(answer)).encode()),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer, "more_body": False})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` once, then waits on the client as before."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
