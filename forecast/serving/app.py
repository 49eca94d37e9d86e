"""MLflow's own scoring app behind small ASGI guards: a request byte cap and clean error answers.

The protocol stays MLflow's (``/invocations``, ``/ping``, ``/health``, ``/version``; same JSON
bodies), so clients written for ``mlflow models serve`` work unchanged. What is added:

- :class:`BodyLimit`: a body over ``max_bytes`` gets HTTP 413 with a JSON message before MLflow
  parses anything. ``Content-Length`` is checked first; a chunked body is counted while it streams
  and nothing past the cap is kept (MLflow reads the whole body into memory, uncapped).
- :class:`~forecast.serving.fast_path.FastInvocations` (the project's own pyfunc only): good
  plain-JSON forecasts are answered without MLflow's JSON parser and encoder; every other request,
  bad ones included, goes on to MLflow's app.
- :class:`CleanErrors`: MLflow prefixes a model's own 400 message with
  ``Failed to predict data '<summarised array>'``; the prefix is cut so the client reads only what
  was expected. Any other body passes through untouched.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

# bytes per number in the JSON body: a float32 as Python writes it ("-0.30000001192092896, ")
BYTES_PER_VALUE = 24
# room for the envelope ({"inputs": ..., "params": ...}) and brackets of small requests
ENVELOPE_BYTES = 64 * 1024
# an over-cap body is read and dropped up to this many bytes so the client can read the 413
DRAIN_BYTES = 64 * 1024 * 1024
MLFLOW_PREFIX = "Failed to predict data '"
MLFLOW_SEPARATOR = "\nError: "
# environment of a uvicorn worker (the factory reads its settings from there, as MLflow's app does)
ENV_MODEL = "FORECAST_SERVING_MODEL"
ENV_MAX_BYTES = "FORECAST_SERVING_MAX_BYTES"


def default_max_bytes(metadata: dict[str, Any]) -> int:
    """A byte cap that admits ``max_samples`` full samples written as JSON, and not much more.

    Args:
        metadata: the pyfunc's metadata (``sample_shape``, ``max_samples``).

    Returns:
        ``max_samples * prod(sample_shape) * 24 + 64 KiB``.
    """
    values = int(metadata["max_samples"]) * math.prod(int(s) for s in metadata["sample_shape"])
    return values * BYTES_PER_VALUE + ENVELOPE_BYTES


async def _send_json(send: Send, status: int, payload: dict[str, str]) -> None:
    body = json.dumps(payload).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class BodyLimit:
    """ASGI middleware: answer 413 for a request body over ``max_bytes``, else pass it on whole.

    The body is read here (it would be read whole by MLflow anyway) and replayed to the inner app
    as one message, so a chunked body over the cap is refused before the app sees any of it.

    Args:
        app: the inner ASGI app.
        max_bytes: the largest accepted body, in bytes (> 0).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, drain_bytes: int = DRAIN_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive number of bytes, got {max_bytes}")
        self.app, self.max_bytes, self.drain_bytes = app, int(max_bytes), int(drain_bytes)

    async def _refuse(self, receive: Receive, send: Send, size: str, read: int) -> None:
        """Read and drop the rest of the body (up to ``drain_bytes``), then answer 413.

        Answering while the client still sends makes the server close on unread data, and the
        client sees a connection reset instead of the 413; nothing read here is kept.
        """
        while read <= self.drain_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            read += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await _send_json(send, 413, self._too_large(size))

    def _too_large(self, size: str) -> dict[str, str]:
        return {
            "error_code": "INVALID_PARAMETER_VALUE",
            "message": f"request body is {size}, over the server's cap of {self.max_bytes} "
            "bytes; send fewer samples per request",
        }

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """Check the declared length, then count the streamed body; replay it under the cap."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                message = f"Content-Length must be a byte count, got {declared[:40]!r}"
                await _send_json(send, 400, {"error_code": "BAD_REQUEST", "message": message})
                return
            if length > self.max_bytes:  # refused before the app sees (or we keep) a byte
                await self._refuse(receive, send, f"{length} bytes", 0)
                return
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > self.max_bytes:  # chunked: stop keeping at the cap
                chunks.clear()
                more = message.get("more_body", False)
                if more:
                    await self._refuse(receive, send, f"over {self.max_bytes} bytes", total)
                else:
                    await _send_json(send, 413, self._too_large(f"{total} bytes"))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:  # later reads wait for the client's disconnect, as uvicorn's would
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


def clean_message(message: str) -> str:
    """Cut MLflow's ``Failed to predict data '<array>'. <newline>Error: `` prefix off a message."""
    if message.startswith(MLFLOW_PREFIX) and MLFLOW_SEPARATOR in message:
        return message.split(MLFLOW_SEPARATOR, 1)[1]
    return message


class CleanErrors:
    """ASGI middleware: strip MLflow's input summary and traceback from error JSON answers.

    Only error answers (4xx, 5xx) of ``/invocations`` with a JSON body are buffered and
    rewritten: the ``message`` loses MLflow's input summary and a ``stack_trace`` key is dropped
    (the traceback stays in the server's log); every other key and the status stay. Successful
    answers stream through untouched.

    Args:
        app: the inner ASGI app (MLflow's scoring app).
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        """Pass through, holding back an error JSON answer until its body can be rewritten."""
        if scope["type"] != "http" or scope.get("path") != "/invocations":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        parts: list[bytes] = []

        async def rewrite(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if message["status"] >= 400 and b"json" in headers.get(b"content-type", b""):
                    start = message
                    return
            if start is None:
                await send(message)
                return
            parts.append(message.get("body", b""))
            if message.get("more_body", False):
                return
            body = b"".join(parts)
            try:
                payload = json.loads(body)
                payload["message"] = clean_message(str(payload["message"]))
                # MLflow attaches the server's traceback to an unexpected model error
                payload.pop("stack_trace", None)
                body = json.dumps(payload).encode()
            except (ValueError, KeyError, TypeError):
                pass  # not MLflow's error JSON: send it as it came
            headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
            headers.append((b"content-length", str(len(body)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": body, "more_body": False})

        await self.app(scope, receive, rewrite)


def guard(
    app: ASGIApp, max_bytes: int, model: Any = None, sample_shape: list[int] | None = None
) -> ASGIApp:
    """Wrap MLflow's scoring app: byte cap outermost, then the fast path, then message cleanup.

    Args:
        app: MLflow's scoring app for ``model``.
        max_bytes: the request byte cap.
        model: the loaded ``PyFuncModel``; with ``sample_shape``, good requests take the fast path.
        sample_shape: one sample's shape (the pyfunc's metadata).
    """
    inner: ASGIApp = CleanErrors(app)
    if model is not None and sample_shape is not None:
        from forecast.serving.fast_path import FastInvocations

        inner = FastInvocations(inner, model, sample_shape)
    return BodyLimit(inner, max_bytes)


def create_app() -> ASGIApp:
    """Uvicorn factory: load the pyfunc at ``$FORECAST_SERVING_MODEL`` and serve it guarded.

    ``$FORECAST_SERVING_MAX_BYTES`` sets the cap (default: :func:`default_max_bytes`). Settings
    travel in the environment so that every uvicorn worker process builds the same app.
    """
    import mlflow.pyfunc
    from mlflow.pyfunc import scoring_server

    model = mlflow.pyfunc.load_model(os.environ[ENV_MODEL])
    metadata = getattr(model.unwrap_python_model(), "metadata", None)
    cap = os.environ.get(ENV_MAX_BYTES)
    if cap:
        max_bytes = int(cap)
    elif metadata:
        max_bytes = default_max_bytes(metadata)
    else:
        raise ValueError(f"{ENV_MAX_BYTES} is needed for a model without forecast metadata")
    shape = metadata.get("sample_shape") if metadata else None
    return guard(scoring_server.init(model), max_bytes, model, shape)
