"""Protocol pings for one WebSocket connection: half-open TCP connections are
noticed (COLLAB_WS_PING_INTERVAL_S, COLLAB_WS_PING_TIMEOUT_S).

A pong can be late without the client being gone: a paced client's pong waits
in its socket behind the messages it sent before it (collab.api.socket_input stops
reading while it paces). So a missing pong ends the connection only if the
client also sent nothing since the ping and its reading is not paused; else it
gets another timeout. A half-open connection sends nothing and is dropped (1011).
"""

from __future__ import annotations

import asyncio
import random
import struct
from typing import Protocol


class PingTarget(Protocol):
    """What the pings need from their connection."""

    def send_ping(self, payload: bytes) -> bool:
        """Send a ping frame; False if the connection is not open any more."""
        ...

    def is_alive_since(self, sent_at: float) -> bool:
        """Whether the client has shown it is there since `sent_at` (loop time)
        other than by a pong, or its reading is paused."""
        ...

    def ping_timed_out(self, timeout_s: float) -> None:
        """No sign of the client: end the connection (1011)."""
        ...


class Pings:
    """One connection's ping timer: at most one timer armed at any time."""

    __slots__ = ("_interval_s", "_loop", "_payload", "_sent_at", "_target", "_timeout_s", "_timer")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        target: PingTarget,
        interval_s: float,
        timeout_s: float,
    ) -> None:
        self._loop = loop
        self._target = target
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._timer: asyncio.TimerHandle | None = None
        self._payload: bytes | None = None
        self._sent_at = 0.0

    def start(self) -> None:
        if self._interval_s:
            self._timer = self._loop.call_later(self._interval_s, self._send)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def on_pong(self, payload: bytes) -> None:
        if self._payload is None or payload != self._payload:
            return  # unsolicited or stale
        self._payload = None
        self.stop()
        rtt_s = self._loop.time() - self._sent_at
        self._timer = self._loop.call_later(max(0.0, self._interval_s - rtt_s), self._send)

    def _send(self) -> None:
        self._timer = None
        payload = struct.pack("!I", random.getrandbits(32))
        self._sent_at = self._loop.time()
        if not self._target.send_ping(payload):
            return
        self._payload = payload
        if self._timeout_s:
            self._timer = self._loop.call_later(self._timeout_s, self._pong_missing)
        else:
            self._timer = self._loop.call_later(self._interval_s, self._send)

    def _pong_missing(self) -> None:
        if self._target.is_alive_since(self._sent_at):
            self._timer = self._loop.call_later(self._timeout_s, self._pong_missing)
            return
        self._timer = None
        self._target.ping_timed_out(self._timeout_s)
