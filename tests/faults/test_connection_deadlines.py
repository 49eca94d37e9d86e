"""Idle and slowloris connections are closed by the server's protocol (uvicorn's alone keeps them).

A real uvicorn server in a thread, a one-line ASGI app, raw sockets, a 1 s head deadline.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import uvicorn

from forecast.serving.protocol import ENV_HEAD_TIMEOUT, PROTOCOL
from forecast.serving.server import free_port

HEAD = b"GET /ping HTTP/1.1\r\nHost: x\r\nUser-Agent: slow\r\nAccept: */*\r\n\r\n"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.fixture(params=["ours", "uvicorn's"])
def server(request, monkeypatch):
    monkeypatch.setenv(ENV_HEAD_TIMEOUT, "1.0")
    port = free_port()
    http = PROTOCOL if request.param == "ours" else "h11"
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=http, log_level="error",
                            timeout_keep_alive=1, lifespan="off")  # fmt: skip
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    yield request.param, port
    srv.should_exit = True
    thread.join(10)


def open_for(port: int, first: bytes, trickle: bytes, limit: float) -> tuple[float, bytes]:
    """Seconds the server kept the connection (``limit``: still open), and what it answered."""
    got = b""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as s:
        s.sendall(first)
        t0 = time.monotonic()
        for i in range(int(limit / 0.25)):
            s.settimeout(0.25)
            try:
                chunk = s.recv(4096)
                if not chunk:
                    return time.monotonic() - t0, got
                got += chunk
            except TimeoutError:
                pass
            except ConnectionResetError:
                return time.monotonic() - t0, got
            if trickle and i % 2 == 0 and i // 2 < len(trickle):  # a byte every 0.5 s
                try:
                    s.send(trickle[i // 2 : i // 2 + 1])
                except (BrokenPipeError, ConnectionResetError):
                    return time.monotonic() - t0, got
    return limit, got


def test_slowloris_and_idle_connections(server):
    kind, port = server
    limit = 3.0
    with ThreadPoolExecutor(3) as pool:  # at once: each is held up to ``limit`` seconds
        fresh = pool.submit(open_for, port, b"", b"", limit)  # connects, never sends a byte
        loris = pool.submit(open_for, port, b"", HEAD, limit)  # trickles its head
        after = pool.submit(open_for, port, HEAD, b"", limit)  # one request, then idle
        (t_fresh, _), (t_loris, _), (t_after, answer) = (
            fresh.result(),
            loris.result(),
            after.result(),
        )
    assert answer.startswith(b"HTTP/1.1 200") and t_after < 2.0  # uvicorn's keep-alive: 1 s
    if kind == "ours":
        assert t_fresh < 2.0 and t_loris < 2.0, (t_fresh, t_loris)
    else:  # why the protocol exists: uvicorn alone holds both for as long as the client likes
        assert t_fresh == limit and t_loris == limit, (t_fresh, t_loris)


def test_a_request_head_completed_in_time_is_served(server):
    kind, port = server
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for part in (HEAD[:10], HEAD[10:30], HEAD[30:]):  # split, but within the deadline
            s.sendall(part)
            time.sleep(0.2)
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(0.5)
        s.sendall(HEAD)  # a second request on the kept-alive connection
        assert s.recv(4096).startswith(b"HTTP/1.1 200")


def test_a_stuck_handler_is_not_cut_by_the_head_deadline(monkeypatch):
    """The deadline covers the head only: a request being answered is never closed by it."""
    from forecast.serving.protocol import HeadDeadline

    monkeypatch.setenv(ENV_HEAD_TIMEOUT, "0.3")

    async def slow(scope, receive, send):
        if scope["type"] == "http":
            await asyncio.sleep(1.0)
            await app(scope, receive, send)

    port = free_port()
    config = uvicorn.Config(slow, host="127.0.0.1", port=port, http=HeadDeadline,
                            log_level="error", lifespan="off")  # fmt: skip
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    while not srv.started:
        time.sleep(0.02)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(HEAD)
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
    finally:
        srv.should_exit = True
        thread.join(10)
