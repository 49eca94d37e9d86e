"""The one ASGI layer of the model server: body reading, byte cap, read timeout and JSON answers.

Every HTTP request passes :class:`Guarded`. It reads the body once, under a byte cap (413, from
``Content-Length`` or while a chunked body streams; nothing past the cap is kept) and a read
deadline (408 for a client that stalls mid-body). ``POST /invocations`` is then answered by the
``invocations`` handler (:class:`forecast.serving.fast_path.Invocations`); every other route
(``/ping``, ``/health``, ``/version``) goes to MLflow's scoring app with the body replayed, so the
protocol stays ``mlflow models serve``'s. Error answers are MLflow's JSON shape
(``{"error_code": ..., "message": ...}``) with our own status and message.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

Message = MutableMapping[str, Any]
Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]

# an over-cap body is read and dropped up to this many bytes so the client can read the 413
DRAIN_BYTES = 64 * 1024 * 1024
# a client that sends its body slower than this (seconds for the whole body) gets 408
BODY_TIMEOUT_S = 30.0
# MLflow's error codes, by HTTP status
ERROR_CODES = {
    400: "BAD_REQUEST",
    408: "REQUEST_TIMEOUT",
    413: "INVALID_PARAMETER_VALUE",
    415: "BAD_REQUEST",
    500: "INTERNAL_ERROR",
    503: "TEMPORARILY_UNAVAILABLE",
}


class Handler(Protocol):
    """Answers one ``POST /invocations``: ``(content type or None, body) -> (status, JSON)``."""

    async def __call__(self, content_type: str | None, body: bytes) -> tuple[int, bytes]:
        """Answer one request."""
        ...


def error_body(status: int, message: str) -> bytes:
    """An error answer in MLflow's JSON shape."""
    code = ERROR_CODES.get(status, "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR")
    return json.dumps({"error_code": code, "message": message}).encode()


async def send_json(send: Send, status: int, body: bytes) -> None:
    """Send a complete JSON answer."""
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class Refused(Exception):
    """A request refused while its body was read (status and message for the client)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


class Disconnected(Exception):
    """The client went away before its body was complete."""


async def read_body(
    scope: Scope, receive: Receive, max_bytes: int, timeout: float, drain_bytes: int = DRAIN_BYTES
) -> bytes:
    """The whole request body, under a byte cap and a deadline.

    Args:
        scope: the ASGI scope (its ``content-length`` header is checked first).
        receive: the ASGI receive callable.
        max_bytes: the largest accepted body.
        timeout: seconds for the whole body.
        drain_bytes: an over-cap body is read (and dropped) up to this many bytes, so the
            client reads the 413 instead of a connection reset.

    Raises:
        Refused: 400 (bad ``Content-Length``), 408 (too slow) or 413 (over the cap).
        Disconnected: the client left.
    """
    declared = dict(scope.get("headers") or []).get(b"content-length")
    length = None
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            length = -1
        if length < 0:
            raise Refused(400, f"Content-Length must be a byte count, got {declared[:40]!r}")
    deadline = time.monotonic() + timeout
    chunks: list[bytes] = []
    total, over = 0, length is not None and length > max_bytes
    while True:
        left = deadline - time.monotonic()
        try:
            message = await asyncio.wait_for(receive(), timeout=max(left, 0.0))
        except asyncio.TimeoutError:
            raise Refused(408, f"request body not received within {timeout:g} s") from None
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > max_bytes:
            over = True
            chunks.clear()  # nothing past the cap is kept
        elif not over:
            chunks.append(chunk)
        if not message.get("more_body", False) or (over and total > drain_bytes):
            break
    if over:
        size = f"{length} bytes" if length is not None else f"over {max_bytes} bytes"
        raise Refused(
            413,
            f"request body is {size}, over the server's cap of {max_bytes} bytes; "
            "send fewer samples per request",
        )
    return b"".join(chunks)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` once, then waits on the client as before."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if sent:  # later reads wait for the client's disconnect, as uvicorn's would
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return again


class Guarded:
    """ASGI app: read every body under the cap; answer ``/invocations`` here, the rest by MLflow.

    Args:
        app: MLflow's scoring app (``/ping``, ``/health``, ``/version``, ...).
        max_bytes: the largest accepted body, in bytes (> 0).
        invocations: the ``POST /invocations`` handler (None: MLflow's app answers it too).
        body_timeout: seconds a client may take to send its body.
        drain_bytes: see :func:`read_body`.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        invocations: Handler | None = None,
        body_timeout: float = BODY_TIMEOUT_S,
        drain_bytes: int = DRAIN_BYTES,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be a positive number of bytes, got {max_bytes}")
        self.app, self.max_bytes, self.invocations = app, int(max_bytes), invocations
        self.body_timeout, self.drain_bytes = float(body_timeout), int(drain_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Read the body, then answer or pass it on."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            body = await read_body(
                scope, receive, self.max_bytes, self.body_timeout, self.drain_bytes
            )
        except Refused as e:
            await send_json(send, e.status, error_body(e.status, e.message))
            return
        except Disconnected:
            return
        if (
            self.invocations is not None
            and scope.get("path") == "/invocations"
            and scope.get("method") == "POST"
        ):
            ctype = dict(scope.get("headers") or []).get(b"content-type")
            status, answer = await self.invocations(
                None if ctype is None else ctype.decode("latin-1"), body
            )
            await send_json(send, status, answer)
            return
        await self.app(scope, replay(body, receive), send)
