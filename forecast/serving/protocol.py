"""Uvicorn's h11 protocol with a request-head deadline: idle and slowloris connections close.

Uvicorn closes a keep-alive connection only after ``timeout_keep_alive`` seconds *without a
byte*, starts that timer only after a first answer, and cancels it on every byte received: a new
connection that sends nothing, or a client trickling its headers one byte a second (slowloris),
holds a connection for ever. :class:`HeadDeadline` arms one more timer whenever the connection
waits for a request head (on connect and after each answer) and closes the connection when no
complete head arrived within ``$FORECAST_SERVING_HEAD_TIMEOUT`` seconds (default 10). Bodies
have their own deadline in the ASGI layer (:func:`forecast.serving.asgi.read_body`).
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

ENV_HEAD_TIMEOUT = "FORECAST_SERVING_HEAD_TIMEOUT"
HEAD_TIMEOUT_S = 10.0
# the import string uvicorn takes for ``http=`` (every worker process imports it)
PROTOCOL = "forecast.serving.protocol:HeadDeadline"

log = logging.getLogger(__name__)


class HeadDeadline(H11Protocol):
    """``H11Protocol`` that closes a connection whose request head is not complete in time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Uvicorn's arguments; the deadline comes from the environment (every worker's)."""
        super().__init__(*args, **kwargs)
        self.head_timeout = float(os.environ.get(ENV_HEAD_TIMEOUT, HEAD_TIMEOUT_S))
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self._head_timer = self.loop.call_later(self.head_timeout, self._expire)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expire(self) -> None:
        self._head_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            log.debug("closed %s: no complete request head in %g s", self.client, self.head_timeout)
            try:
                self.conn.send(h11.ConnectionClosed())
            except h11.LocalProtocolError:
                pass
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Start waiting for the first request head."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Feed h11; a complete head (the request started) ends the wait."""
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._disarm()

    def on_response_complete(self) -> None:
        """After an answer the next head is awaited under the same deadline."""
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the timer with the connection."""
        self._disarm()
        super().connection_lost(exc)
