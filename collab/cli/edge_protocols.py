"""The protocols `collab serve` runs under uvicorn: its httptools HTTP protocol with
the limits it lacks, applied before any request reaches the application, and its
WebSocket protocol with a ping check that allows for pacing.

`BoundedHttpProtocol`. Every connection starts here, WebSockets included (the
handshake is an HTTP request, parsed by this protocol before uvicorn hands the
socket to its WebSocket protocol), so this is the one place that sees a
request's bytes before they are parsed into headers:

- **open sockets** (`max_sockets`): a connection beyond the cap is answered 503
  and closed before anything is read. uvicorn's own `limit_concurrency` is not
  used: it counts WebSocket connections and tasks but refuses only HTTP
  requests, after their headers, and never a WebSocket handshake (httptools
  returns before the check for an upgrade).
- **header time** (`request_timeout_s`, slowloris): a request's line and
  headers must be complete within the timeout of its first byte (for the first
  request, of the connection opening); else 408 and the connection is closed.
  uvicorn has no such timeout (`timeout_keep_alive` only covers the silence
  between requests, and any byte ends it).
- **header bytes** (`max_request_header_bytes`): httptools accumulates a header
  that never ends without any bound (h11's `h11_max_incomplete_event_size` is
  not used by httptools); past the limit, 431 and closed.

The hooks are httptools' parser callbacks (`on_message_begin`,
`on_headers_complete`) and asyncio's protocol methods, which uvicorn's class
implements; the subclass calls through to each and keeps its own state apart.
A request's body is bounded by the application's edge (collab.api.http_edge).

`EdgeSocketProtocol`. uvicorn hands every WebSocket upgrade to the class given
as its `ws` option (`BoundedHttpProtocol` hands this one the request httptools
parsed, not the request printed back into bytes: one parse per handshake); this one is
collab.api.socket's connection (no ASGI: the frames go from the socket to the
room and back), registered in uvicorn's set of connections so a shutdown
closes it (1012) and waits for it. Use `edge_socket_protocol(app, ...)`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from uvicorn.config import Config
from uvicorn.logging import TRACE_LOG_LEVEL
from uvicorn.protocols.http.flow_control import FlowControl
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import is_ssl
from uvicorn.server import ServerState

from collab.api.assembly import OfferedExtensions, offered_extensions
from collab.api.connection import ConnectionEdge
from collab.api.forwarded import TrustedProxies
from collab.api.socket import SocketConnection

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """What every connection is held to before its request is parsed; 0 = no limit."""

    max_sockets: int = 0
    request_timeout_s: float = 0.0
    max_request_header_bytes: int = 0
    # Told the limit's name (`sockets`, `request_timeout`, `request_headers`) on each
    # refusal, for collab_limit_refusals_total{limit}.
    count_refusal: Callable[[str], None] = lambda _limit: None


def bounded_http_protocol(limits: ConnectionLimits) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's `http` option, holding `limits`."""

    class Configured(BoundedHttpProtocol):
        _limits = limits

    return Configured


# How long a refused connection's late bytes are read and dropped before it is
# closed (see BoundedHttpProtocol._refuse); the socket still counts toward the cap.
_LINGER_S = 2.0


class BoundedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a socket cap, a header deadline and a
    header size bound. Use `bounded_http_protocol(limits)` for a configured class."""

    _limits = ConnectionLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._is_awaiting_headers = True  # until the first request's headers are complete
        self._header_bytes = 0
        self._header_deadline: asyncio.TimerHandle | None = None
        self._is_lingering = False  # refused: reading only to discard, then closing

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # uvicorn's own, except for the addresses: it reads them through
        # `get_extra_info("socket")`, which on uvloop builds a socket object per
        # connection (22 us of a connect's CPU, a tenth of it in the idle
        # benchmark's profile), while the transport already holds both.
        self.connections.add(self)
        self.transport = transport
        self.flow = FlowControl(transport)
        local = transport.get_extra_info("sockname")
        self.server = _host_port(local) or ((local, None) if isinstance(local, str) else None)
        self.client = _host_port(transport.get_extra_info("peername"))
        self.scheme = "https" if is_ssl(transport) else "http"
        if self.logger.level <= TRACE_LOG_LEVEL:
            self.logger.log(TRACE_LOG_LEVEL, "%s - HTTP connection made", self._client_label())
        limits = self._limits
        if limits.max_sockets and len(self.connections) > limits.max_sockets:
            logger.warning(
                "client=%s refused: %d sockets open (COLLAB_MAX_SOCKETS)",
                self._client_label(),
                limits.max_sockets,
            )
            self._refuse(HTTPStatus.SERVICE_UNAVAILABLE, "too many connections", "sockets")
            return
        self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._is_lingering:
            return  # the rest of a refused request: read and dropped
        super().data_received(data)
        limit = self._limits.max_request_header_bytes
        if not self._is_awaiting_headers or not limit or self.transport.is_closing():
            return
        # Still inside a request's line and headers after this read: all of it
        # counts (a read that completed them is not counted, so a body in the same
        # read never does).
        self._header_bytes += len(data)
        if self._header_bytes > limit:
            logger.warning(
                "client=%s refused: request headers over %d bytes", self._client_label(), limit
            )
            self._refuse(
                HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                f"request headers over {limit} bytes",
                "request_headers",
                is_sending=True,
            )

    def handle_websocket_upgrade(self) -> None:
        """uvicorn's, except that collab's WebSocket protocol is handed the request
        httptools parsed (collab.api.handshake), not the request printed back
        into bytes to be parsed again."""
        protocol_class = self.ws_protocol_class
        if not isinstance(protocol_class, type) or not issubclass(
            protocol_class, EdgeSocketProtocol
        ):
            super().handle_websocket_upgrade()  # uvicorn's own WebSocket protocols
            return
        self.connections.discard(self)
        protocol = protocol_class(
            config=self.config,
            server_state=self.server_state,
            app_state=self.app_state,
            is_request_parsed=True,
        )
        protocol.connection_made(self.transport)
        # Before the upgrade (uvicorn sets it after): a loaded document is joined
        # within it, and the transport's pause_writing must reach the protocol
        # that writes the first sync messages.
        self.transport.set_protocol(protocol)
        protocol.upgrade(self.scope["method"], self.url, self.headers)
        # This protocol is done with, but its parser holds it (a cycle, which only
        # the garbage collector would free; uvicorn breaks it in connection_lost,
        # which the upgraded socket calls on the new protocol instead).
        self.parser = None  # type: ignore[assignment]

    # httptools parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if not self._is_awaiting_headers:  # a later request on a kept-alive connection
            self._is_awaiting_headers = True
            self._header_bytes = 0
            self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._is_awaiting_headers = False
        self._disarm_header_deadline()
        super().on_headers_complete()

    # helpers

    def _arm_header_deadline(self) -> None:
        timeout_s = self._limits.request_timeout_s
        if timeout_s:
            self._header_deadline = self.loop.call_later(timeout_s, self._headers_too_slow)

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        if not self._is_awaiting_headers or self.transport.is_closing():
            return
        logger.info(
            "client=%s closed: request headers not complete within %g s",
            self._client_label(),
            self._limits.request_timeout_s,
        )
        self._refuse(
            HTTPStatus.REQUEST_TIMEOUT,
            f"request headers not complete within {self._limits.request_timeout_s:g} s",
            "request_timeout",
            is_sending=True,
        )

    def _refuse(
        self, status: HTTPStatus, message: str, limit: str, *, is_sending: bool = False
    ) -> None:
        """Answer `status` (unless a response to an earlier request is under way:
        a pipelined request must not cut into it) and close the connection.

        `is_sending`: the client is still sending its request. Closing a socket
        with unread bytes makes the kernel answer them with a reset, which can
        destroy the response before the client reads it; so the write side is
        shut (FIN after the response) and what still arrives is dropped for
        `_LINGER_S` at most, as HTTP servers' "lingering close" does."""
        self._is_awaiting_headers = False
        self._disarm_header_deadline()
        self._limits.count_refusal(limit)
        if self.cycle is None or self.cycle.response_complete:
            body = message.encode()
            self.transport.write(
                b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode())
                + b"content-type: text/plain; charset=utf-8\r\n"
                + b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
                + body
            )
        if is_sending and self.transport.can_write_eof():
            self._is_lingering = True
            self.transport.write_eof()
            self.loop.call_later(_LINGER_S, self.transport.close)
            return
        self.transport.close()

    def _client_label(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "-"


def _host_port(info: Any) -> tuple[str, int] | None:
    """(host, port) of an IPv4 or IPv6 socket address (IPv6's tuple has four
    fields), as uvicorn's scope holds it; None for anything else."""
    if isinstance(info, tuple | list) and len(info) >= 2:
        return (str(info[0]), int(info[1]))
    return None


class EdgeSocketProtocol(SocketConnection):
    """collab.api.socket's connection, built the way uvicorn builds its WebSocket
    protocols. `edge_socket_protocol` makes the configured class."""

    __slots__ = ("_server_connections",)
    _app: Any = None
    _extensions: OfferedExtensions = None

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        is_request_parsed: bool = False,
    ) -> None:
        # Set by the app's lifespan, which runs before uvicorn accepts a connection.
        edge: ConnectionEdge | None = getattr(self._app.state, "connections", None)
        max_bytes = edge.runtime.settings.max_message_bytes if edge is not None else 0
        allowed = config.forwarded_allow_ips
        if not isinstance(allowed, str):
            allowed = ",".join(allowed)
        proxies = trusted_proxies(allowed) if config.proxy_headers else None
        super().__init__(
            edge, self._extensions, max_bytes, proxies, is_request_parsed=is_request_parsed
        )
        self._server_connections: set[Any] = server_state.connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._server_connections.add(self)
        super().connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server_connections.discard(self)
        super().connection_lost(exc)


@functools.lru_cache(maxsize=4)
def trusted_proxies(allowed: str) -> TrustedProxies:
    """uvicorn's `forwarded_allow_ips`, parsed once (not per connection)."""
    return TrustedProxies(allowed)


def edge_socket_protocol(app: Any, *, is_deflate_offered: bool) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's `ws` option, serving `app`'s /ws/ connections."""
    extensions = offered_extensions(is_deflate_offered=is_deflate_offered)

    class Configured(EdgeSocketProtocol):
        __slots__ = ()
        _app = app
        _extensions = extensions

    return Configured
