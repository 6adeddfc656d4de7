"""The application's outer edge: which host a request names, and how much body it
may send. Two pure ASGI middlewares, outside every route (the WebSocket route
included), so nothing behind them parses a byte they refuse.

- `HostAllowList`: a request or WebSocket handshake whose `Host` is not one of
  ours is answered 421 before anything else looks at it. This is what stops DNS
  rebinding: a page on `evil.example` whose name is re-pointed at 127.0.0.1
  sends `Host: evil.example` (and a matching `Origin`, so the same-origin rule
  alone cannot tell). Always ours: `localhost` and `*.localhost` (RFC 6761;
  browsers resolve them to loopback themselves), any IP address (an address
  cannot be re-pointed, so a page that names one is really on it), the
  `COLLAB_PUBLIC_URL` host, a `--host` that is a name, and `COLLAB_ALLOWED_HOSTS`.
  The port is not compared: a rebinding page uses the server's own.
- `BodyLimit`: a declared `Content-Length` over the limit is answered 413 before
  the route runs; a body that arrives in pieces (chunked) is counted as the
  route reads it and refused the moment it passes the limit; a body that does
  not arrive within `COLLAB_REQUEST_TIMEOUT_S` of the headers is refused (408).
  A response that leaves any body unread closes the connection, so the server
  does not go on reading (and discarding) what a refused client keeps sending.

Why not FastAPI's or Starlette's own body limit: they check `Content-Length`
only once a route reads the body, never close the connection after refusing,
and need newer releases than collab's dependency range allows.

Routes must authorize before they read a body (collab.api.versions reads the
body of a save only after the write-access dependency has passed); together,
a stranger's upload costs at most the limit, and without a token, nothing.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import json
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

_LOOPBACK_NAME: Final = "localhost"
_CLOSE: Final = (b"connection", b"close")

# Told the limit's name on each refusal (collab_limit_refusals_total{limit}).
CountRefusal = Callable[[str], None]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "-"


def host_name(host_header: str) -> str | None:
    """The name in a `Host` header, lower-cased, without port or trailing dot;
    None for a header that is not `name[:port]` or `[v6 address][:port]`."""
    host = host_header.strip().lower()
    if host.startswith("["):
        address, bracket, rest = host[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and rest[1:].isdigit())):
            return None
        return address
    name, colon, port = host.rpartition(":")
    if not colon:
        name = host
    elif not port.isdigit():
        return None
    name = name.rstrip(".")
    return name or None


@dataclass(frozen=True, slots=True)
class AllowedHosts:
    """The host names this server answers to (besides IP addresses and localhost).

    `names` are exact; `suffixes` come from `*.example.com` entries and match
    any name below it; `allows_any` (an entry `*`) turns the check off."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    allows_any: bool = False

    @classmethod
    def of(cls, entries: Iterable[str]) -> AllowedHosts:
        """From `COLLAB_ALLOWED_HOSTS` entries, URLs (the public URL) or `--host`."""
        names: set[str] = set()
        suffixes: list[str] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                return cls(allows_any=True)
            if "://" in entry:
                entry = urlsplit(entry).netloc.rpartition("@")[2]
            if _is_ip_address(entry.strip("[]")):
                continue  # always admitted
            if entry.startswith("*."):
                suffixes.append(entry[1:])  # ".example.com"
                continue
            name = host_name(entry)
            if name is None:
                raise ValueError(f"not a host name: {raw!r}")
            names.add(name)
        return cls(frozenset(names), tuple(suffixes))

    def admits(self, host_header: str | None) -> bool:
        if self.allows_any:
            return True
        if host_header is None:
            return False  # HTTP/1.1 requires it, and every browser sends it
        name = host_name(host_header)
        if name is None:
            return False
        if name == _LOOPBACK_NAME or name.endswith("." + _LOOPBACK_NAME):
            return True
        return name in self.names or name.endswith(self.suffixes) or _is_ip_address(name)


# The same few Host values come with every request and handshake, and parsing
# one with `ipaddress` cost more than the rest of a handshake's admission.
@functools.lru_cache(maxsize=256)
def _is_ip_address(name: str) -> bool:
    """An IP address is always admitted: it cannot be re-pointed (rebound)."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostAllowList:
    """ASGI middleware: HTTP requests and WebSocket handshakes naming a host that
    is not ours are answered 421 Misdirected Request (RFC 9110 15.5.20)."""

    def __init__(self, app: ASGIApp, *, allowed: AllowedHosts, count_refusal: CountRefusal) -> None:
        self.app = app
        self._allowed = allowed
        self._count_refusal = count_refusal

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine: an admitted WebSocket goes on without this frame kept
        # alive for the connection's whole life.
        if scope["type"] not in ("http", "websocket"):
            return self.app(scope, receive, send)
        host = _header(scope, b"host")
        if self._allowed.admits(host):
            return self.app(scope, receive, send)
        return self._refuse(scope, receive, send, host)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, host: str | None) -> None:
        kind = scope["type"]
        self._count_refusal("host")
        log_host_refusal(_client(scope), kind, scope["path"], host)
        detail = host_refusal_detail(host)
        if kind == "http":
            await _respond(send, 421, detail)
        elif "websocket.http.response" in scope.get("extensions", {}):
            await receive()  # websocket.connect
            await _respond(send, 421, detail, prefix="websocket.")
        else:  # a server without denial responses: a refused handshake (403)
            await receive()
            await send({"type": "websocket.close", "code": 1008})


def log_host_refusal(client: str, kind: str, path: str, host: str | None) -> None:
    logger.warning(
        "client=%s refused %s %s: Host %r is not one of this server's names (COLLAB_ALLOWED_HOSTS)",
        client,
        kind,
        path[:200],
        (host or "")[:200],
    )


def host_refusal_detail(host: str | None) -> str:
    return f"this server does not answer for host {(host or '')[:200]!r}"


class _BodyRefused(HTTPException):
    """Raised from a route's `receive`: the exception middleware answers it."""


class BodyLimit:
    """ASGI middleware: request bodies of at most `max_bytes` (0: no limit),
    delivered within `timeout_s` of the headers (0: no limit)."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, timeout_s: float, count_refusal: CountRefusal
    ) -> None:
        self.app = app
        self._max_bytes = max_bytes
        self._timeout_s = timeout_s
        self._count_refusal = count_refusal

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        # Not a coroutine, for the same reason as HostAllowList's.
        if scope["type"] != "http":
            return self.app(scope, receive, send)
        return self._bounded(scope, receive, send)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send) -> None:
        max_bytes = self._max_bytes
        declared = _declared_length(scope)
        if max_bytes and declared is not None and declared > max_bytes:
            self._refuse(scope, "request_body", f"declares {declared} bytes")
            await _respond(send, 413, f"request body over {max_bytes} bytes")
            return
        # Chunked (no length) or a positive length: a body is coming.
        is_body_pending = declared != 0 and (
            declared is not None or _header(scope, b"transfer-encoding") is not None
        )
        received = 0
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s if self._timeout_s else None

        async def bounded_receive() -> Message:
            nonlocal received, is_body_pending
            if not is_body_pending:
                return await receive()  # http.disconnect, when the client goes
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                what = f"not complete within {self._timeout_s:g} s"
                self._refuse(scope, "request_timeout", what)
                raise _BodyRefused(408, f"request body {what}") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                is_body_pending = bool(message.get("more_body", False))
                if max_bytes and received > max_bytes:
                    self._refuse(scope, "request_body", f"sent over {max_bytes} bytes")
                    raise _BodyRefused(413, f"request body over {max_bytes} bytes")
            else:
                is_body_pending = False
            return message

        async def closing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and is_body_pending:
                # Answered before the body was read (a refusal, or a route that
                # ignores bodies): keeping the connection would mean reading the
                # rest of the body only to throw it away.
                message = {**message, "headers": [*message.get("headers", ()), _CLOSE]}
            await send(message)

        await self.app(scope, bounded_receive, closing_send)

    def _refuse(self, scope: Scope, limit: str, what: str) -> None:
        self._count_refusal(limit)
        logger.warning(
            "client=%s refused %s %s: request body %s",
            _client(scope),
            scope["method"],
            scope["path"][:200],
            what,
        )


def _declared_length(scope: Scope) -> int | None:
    value = _header(scope, b"content-length")
    if value is None:
        return None
    try:
        return max(int(value), 0)
    except ValueError:
        return None  # the HTTP parser has already refused a malformed length


async def _respond(send: Send, status: int, detail: str, *, prefix: str = "") -> None:
    """A JSON error body in the API's shape, on a connection that closes after it."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": f"{prefix}http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                _CLOSE,
            ],
        }
    )
    await send({"type": f"{prefix}http.response.body", "body": body})
