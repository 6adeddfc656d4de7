"""The HTTP edge against hostile clients: bodies, slow and endless headers, too many
sockets, foreign Host names. Each is refused with its documented status before
its payload is read or parsed (asserted on bytes, not seconds), and a bystander
in another room keeps round-tripping edits throughout.

The hostile clients are raw TCP sockets: they send what a real client never would.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import jwt
import pytest

from collab.api.http_edge import AllowedHosts, host_name
from tests.support.server import RunningServer, metric_value, run_server
from tests.support.waiting import TIMEOUT_S, eventually
from tests.support.yclient import YClient

SECRET = "http-edge-test-secret-with-32-bytes+++"
UPLOAD_BYTES = 100 * 1024 * 1024
CHUNK = b"0" * 65536
WS_HANDSHAKE = (
    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
)


def token(role: str = "write") -> str:
    claims = {"exp": int(time.time()) + 600, "docs": ["*"], "role": role}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@contextlib.asynccontextmanager
async def bystander(server: RunningServer, token: str | None = None) -> AsyncIterator[None]:
    """Two clients in a room of their own, round-tripping edits all along; on exit,
    one more round trip must still complete."""
    query = f"?token={token}" if token else ""
    a = await YClient(server.ws_url("bystander") + query).connect()
    b = await YClient(server.ws_url("bystander") + query).connect()
    round_trips = 0

    async def keep_editing() -> None:
        nonlocal round_trips
        while True:
            marker = f"<{round_trips}>"
            a.text.insert(len(a.text), marker)
            await eventually(lambda m=marker: str(b.text).endswith(m), what="bystander round trip")
            round_trips += 1

    editing = asyncio.create_task(keep_editing())
    try:
        yield
        done = round_trips
        await eventually(lambda: round_trips > done or editing.done(), what="one more round trip")
        if editing.done():
            editing.result()  # its failure, if it failed
    finally:
        editing.cancel()
        for client in (a, b):
            await client.close()


async def upload(server: RunningServer, head: str, *, is_chunked: bool) -> tuple[bytes, int]:
    """POST `head` and then up to UPLOAD_BYTES of body, reading all along; stop as
    soon as the server answers or stops taking bytes. The status line and the
    number of body bytes the socket took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(head.encode())
    answered = asyncio.create_task(reader.readline())
    frame = b"%x\r\n%s\r\n" % (len(CHUNK), CHUNK) if is_chunked else CHUNK
    sent = 0
    try:
        while sent < UPLOAD_BYTES and not answered.done():
            writer.write(frame)
            await writer.drain()
            sent += len(CHUNK)
            await asyncio.sleep(0)  # the server runs in this event loop too
    except (ConnectionResetError, BrokenPipeError):
        pass  # the server closed the connection: the upload is cut
    try:
        status_line = await asyncio.wait_for(answered, TIMEOUT_S)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return status_line, sent


def snapshot_post(framing: str, *, bearer: str | None = None) -> str:
    auth = f"Authorization: Bearer {bearer}\r\n" if bearer else ""
    length = (
        "Transfer-Encoding: chunked\r\n"
        if framing == "chunked"
        else f"Content-Length: {UPLOAD_BYTES}\r\n"
    )
    return (
        "POST /api/documents/doc/snapshots HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\n{auth}{length}\r\n"
    )


def status_of(status_line: bytes) -> int:
    assert status_line.startswith(b"HTTP/1.1 "), status_line
    return int(status_line.split()[1])


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_100_mb_upload_without_a_token_is_refused_before_it_is_read(settings, framing):
    async with run_server(settings.replace(auth_secret=SECRET)) as server:
        async with bystander(server, token()):
            status_line, sent = await upload(
                server, snapshot_post(framing), is_chunked=framing == "chunked"
            )
    # Refused as it arrived (a declared size over the limit: 413; else no token:
    # 401), while the client was still sending: the socket took a few MB of
    # buffers, not the upload.
    assert status_of(status_line) in (401, 413)
    assert sent < UPLOAD_BYTES // 4


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_body_over_the_limit_with_a_valid_token_is_refused_with_413(settings, framing):
    async with run_server(settings.replace(auth_secret=SECRET)) as server:
        async with bystander(server, token()):
            status_line, sent = await upload(
                server, snapshot_post(framing, bearer=token()), is_chunked=framing == "chunked"
            )
        refused = metric_value(
            server.runtime.metrics, "collab_limit_refusals_total", limit="request_body"
        )
    assert status_of(status_line) == 413
    assert sent < UPLOAD_BYTES // 4
    assert refused == 1


async def test_a_small_body_is_still_read_after_authorization(settings):
    async with run_server(settings.replace(auth_secret=SECRET)) as server:
        writer = await YClient(f"{server.ws_url('doc')}?token={token()}").connect()
        writer.text.insert(0, "v1")
        await eventually(lambda: writer.is_saved())
        body = b'{"label": "first"}'
        head = (
            "POST /api/documents/doc/snapshots HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token()}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        reader, conn = await asyncio.open_connection("127.0.0.1", server.port)
        conn.write(head.encode() + body)
        response = await asyncio.wait_for(reader.read(), TIMEOUT_S)
        conn.close()
        await writer.close()
    assert status_of(response.split(b"\r\n", 1)[0] + b"\r\n") == 201
    assert b'"label":"first"' in response


async def dribble(server: RunningServer, request: bytes, *, limit_bytes: int) -> tuple[bytes, int]:
    """Send `request` one byte at a time, like a client on a very slow link (or a
    slowloris), then header lines that never end; stop once the server closes the
    connection or after `limit_bytes`. What the server sent, and how many bytes
    went out."""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    closed = asyncio.create_task(reader.read())
    padding = b"".join(b"X-Pad-%d: 1\r\n" % i for i in range(limit_bytes // 10))
    sent = 0
    try:
        for byte in (request + padding)[:limit_bytes]:
            if closed.done():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            sent += 1
            await asyncio.sleep(0.02)  # the slow client's pace (not a synchronisation)
    except (ConnectionResetError, BrokenPipeError):
        pass
    try:
        response = await asyncio.wait_for(closed, TIMEOUT_S)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return response, sent


@pytest.mark.parametrize(
    "request_head",
    [
        "GET /api/documents HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        f"GET /ws/doc HTTP/1.1\r\nHost: 127.0.0.1\r\n{WS_HANDSHAKE}",
    ],
    ids=["http request", "websocket handshake"],
)
async def test_headers_dribbled_slower_than_the_timeout_are_cut_off_with_408(
    settings, request_head
):
    async with run_server(settings.replace(request_timeout_s=0.5)) as server:
        async with bystander(server):
            # 0.5 s at one byte per 20 ms is ~25 bytes; the dribble would go on for 1,000.
            response, sent = await dribble(server, request_head.encode(), limit_bytes=1000)
        timed_out = metric_value(
            server.runtime.metrics, "collab_limit_refusals_total", limit="request_timeout"
        )
    assert response.startswith(b"HTTP/1.1 408 ")
    assert sent < 1000
    assert timed_out == 1


async def test_a_header_that_never_ends_is_refused_with_431_at_the_limit(settings):
    async with run_server(settings) as server:
        async with bystander(server):
            status_line, sent = await upload(
                server,
                "GET /api/documents HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ",
                is_chunked=False,
            )
    assert status_of(status_line) == 431
    assert sent < UPLOAD_BYTES // 4


async def test_sockets_over_the_cap_are_answered_503_and_closed(settings, caplog):
    async with run_server(settings.replace(max_sockets=4)) as server:
        async with bystander(server):  # two sockets
            idle = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(2)]
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            host, port = writer.get_extra_info("sockname")[:2]
            # Refused before it sends a byte.
            refused = await asyncio.wait_for(reader.read(), TIMEOUT_S)
            writer.close()
            assert refused.startswith(b"HTTP/1.1 503 ")
            # The log names the client by the address its socket has.
            assert f"client={host}:{port} refused: 4 sockets open" in caplog.text
            # A socket closed is a slot free again.
            idle_writer = idle.pop()[1]
            idle_writer.close()

            async def served() -> bool:
                reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
                writer.write(
                    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
                )
                answer = await asyncio.wait_for(reader.read(), TIMEOUT_S)
                writer.close()
                return answer.startswith(b"HTTP/1.1 200 ")

            await eventually(served, what="a freed slot serves again")
            for _, other in idle:
                other.close()
        assert (
            metric_value(server.runtime.metrics, "collab_limit_refusals_total", limit="sockets")
            >= 1
        )


ALLOWED_HOSTS_SETTINGS = {
    "public_url": "https://collab.example.com",
    "allowed_hosts": "docs.example.org, *.corp.example",
}


async def request_with_host(
    server: RunningServer, host: str | None, path: str, extra: str = ""
) -> int:
    host_line = f"Host: {host}\r\n" if host is not None else ""
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    # A handshake names its own Connection header (Upgrade).
    connection = "" if "Upgrade" in extra else "Connection: close\r\n"
    writer.write(f"GET {path} HTTP/1.1\r\n{host_line}{extra}{connection}\r\n".encode())
    status_line = await asyncio.wait_for(reader.readline(), TIMEOUT_S)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return status_of(status_line)


@pytest.mark.parametrize("path", ["/api/documents", "/ws/doc"], ids=["http", "websocket"])
async def test_a_dns_rebinding_host_is_refused_with_421(settings, path):
    """A page on evil.example whose name now points at 127.0.0.1: its requests
    carry `Host: evil.example:PORT` and a matching Origin, so the same-origin rule
    alone lets them through."""
    async with run_server(settings.replace(**ALLOWED_HOSTS_SETTINGS)) as server:
        extra = WS_HANDSHAKE if path.startswith("/ws/") else ""
        port = server.port
        async with bystander(server):
            for host in (f"evil.example:{port}", "evil.example", "localhost.evil.example", None):
                origin = f"Origin: http://{host}\r\n" if host else ""
                assert await request_with_host(server, host, path, extra + origin) == 421, host
            ok = 101 if extra else 200
            for host in (
                f"127.0.0.1:{port}",
                f"localhost:{port}",
                f"[::1]:{port}",
                "app.localhost",
                "10.1.2.3",
                "collab.example.com",
                "DOCS.example.org.",
                "wiki.corp.example",
            ):
                assert await request_with_host(server, host, path, extra) == ok, host
        refused = metric_value(server.runtime.metrics, "collab_limit_refusals_total", limit="host")
    assert refused == 4


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ("Example.COM:8080", "example.com"),
        ("example.com.", "example.com"),
        ("[::1]:1234", "::1"),
        ("[::1]", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("example.com:http", None),
        ("[::1", None),
        ("", None),
    ],
)
def test_host_header_names(header, name):
    assert host_name(header) == name


def test_allowed_hosts_come_from_urls_names_and_patterns():
    allowed = AllowedHosts.of(
        ["https://user@collab.example.com:8443/x", "a.example", "*.b.example"]
    )
    assert allowed.admits("collab.example.com")
    assert allowed.admits("a.example:1")
    assert allowed.admits("c.b.example")
    assert not allowed.admits("b.example")
    assert not allowed.admits("xa.example")
    assert AllowedHosts.of(["*"]).admits("anything.example")
    with pytest.raises(ValueError):
        AllowedHosts.of(["bad host:port"])
