"""The ASGI layer of the server: byte cap (413), read deadline (408), routing, JSON answers."""

from __future__ import annotations

import asyncio
import json

import pytest

from forecast.serving.app import default_max_bytes
from forecast.serving.asgi import Guarded


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


class Handler:
    """An /invocations handler that records what it was given."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, bytes]] = []

    async def __call__(self, content_type, body):
        self.seen.append((content_type, body))
        return 200, b'{"ok": true}'


def call(app, chunks, headers=(), path="/invocations", method="POST", delay=0.0):
    """Run one request through ``app``; return (status, headers, body, messages left unread)."""
    queue = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
        for i, c in enumerate(chunks)
    ]
    sent = []

    async def receive():
        if delay and len(queue) < len(chunks):  # the client stalls after its first chunk
            await asyncio.sleep(delay)
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(m):
        sent.append(m)

    scope = {"type": "http", "method": method, "path": path, "headers": list(headers),
             "query_string": b"", "http_version": "1.1", "scheme": "http"}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body, len(queue)


def test_declared_length_over_the_cap_is_413_and_no_app_runs():
    inner, handler = Echo(), Handler()
    status, headers, body, _ = call(
        Guarded(inner, 100, handler), [b"x" * 60, b"x" * 60], [(b"content-length", b"120")]
    )
    assert status == 413 and inner.calls == 0 and handler.seen == []
    assert headers[b"content-type"] == b"application/json"
    assert "120 bytes, over the server's cap of 100" in json.loads(body)["message"]


def test_chunked_body_is_counted_while_streaming_and_stopped_at_the_cap():
    inner = Echo()
    status, _, body, _ = call(Guarded(inner, 100), [b"x" * 60, b"x" * 60, b"x" * 60])
    assert status == 413 and inner.calls == 0
    assert "over 100 bytes" in json.loads(body)["message"]
    limited = Guarded(inner, 100, drain_bytes=150)  # drains no further than drain_bytes
    assert call(limited, [b"x" * 60] * 5)[0] == 413 and call(limited, [b"x" * 60] * 5)[3] > 0


def test_body_at_the_cap_reaches_the_handler_whole_and_other_routes_mlflow():
    inner, handler = Echo(), Handler()
    app = Guarded(inner, 120, handler)
    ctype = [(b"content-type", b"application/json; charset=utf-8")]
    status, _, body, _ = call(app, [b"x" * 60, b"x" * 60], ctype)
    assert status == 200 and handler.seen == [("application/json; charset=utf-8", b"x" * 120)]
    assert inner.calls == 0
    status, _, body, _ = call(app, [b"y" * 7], path="/ping", method="GET")
    assert status == 200 and json.loads(body) == {"read": 7} and inner.calls == 1
    call(app, [b"{}"])
    assert handler.seen[-1][0] is None  # no Content-Type reaches the handler as None


def test_slow_body_is_408():
    status, _, body, _ = call(Guarded(Echo(), 100, body_timeout=0.05), [b"x", b"y"], delay=0.3)
    assert status == 408 and "within 0.05 s" in json.loads(body)["message"]


def test_bad_content_length_is_400_and_cap_must_be_positive():
    status, _, body, _ = call(Guarded(Echo(), 100), [b"x"], [(b"content-length", b"ten")])
    assert status == 400 and "Content-Length must be a byte count" in json.loads(body)["message"]
    with pytest.raises(ValueError, match="max_bytes"):
        Guarded(Echo(), 0)


def test_default_cap_admits_max_samples_as_json_and_refuses_more():
    meta = {"sample_shape": [12, 1, 32, 32], "max_samples": 4}
    cap = default_max_bytes(meta)
    full = json.dumps({"inputs": [[-0.30000001192092896] * (12 * 32 * 32)] * 4}).encode()
    assert len(full) <= cap < 2 * len(full)
