"""One webhook POST over HTTP/1.1 (asyncio streams; TLS for https URLs).

Owns sending one request and reading the status line of the answer: a 2xx is a
delivery, anything else (a redirect included: none is followed, so a receiver
cannot send the server's requests elsewhere) a failure, raised as
`DeliveryFailed` with a short reason. Bounded in time as a whole. `Connection:
close`: deliveries are rare next to edits, and one connection per request keeps
this small and obviously correct.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Mapping
from urllib.parse import urlsplit

_MAX_STATUS_LINE_BYTES = 8192


class DeliveryFailed(Exception):
    """The receiver did not take the event (why, in a few words)."""


def check_url(url: str) -> str:
    """`url` if it is an http(s) URL a request can be made to; else ValueError."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"a webhook URL must be http:// or https:// with a host, not {url!r}")
    if any(c.isspace() or ord(c) < 0x20 for c in url):
        raise ValueError(f"a webhook URL must not contain spaces or control characters: {url!r}")
    return url


async def post(url: str, body: bytes, headers: Mapping[str, str], *, timeout_s: float) -> int:
    """POST `body` to `url`; the 2xx status, or `DeliveryFailed`."""
    parts = urlsplit(check_url(url))
    host = parts.hostname
    assert host is not None
    is_tls = parts.scheme == "https"
    port = parts.port or (443 if is_tls else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rpartition("@")[2]
    lines = [
        f"POST {target} HTTP/1.1",
        f"Host: {host_header}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=ssl.create_default_context() if is_tls else None
            )
            try:
                writer.write(request)
                await writer.drain()
                status_line = await reader.readline()
            finally:
                writer.close()
                with contextlib.suppress(OSError):  # the answer is all we needed
                    await writer.wait_closed()
    except TimeoutError:
        raise DeliveryFailed(f"no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise DeliveryFailed(f"connection failed: {exc}") from exc
    return _status(status_line)


def _status(line: bytes) -> int:
    parts = line[:_MAX_STATUS_LINE_BYTES].decode("latin-1").split(maxsplit=2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise DeliveryFailed("no HTTP answer")
    status = int(parts[1])
    if not 200 <= status < 300:
        raise DeliveryFailed(f"HTTP {status}")
    return status
