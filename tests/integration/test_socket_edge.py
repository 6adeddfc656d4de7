"""The WebSocket edge of collab serve (collab.api.socket): hostile messages are
refused by their kind's limit before they are inflated or decoded
(collab.api.assembly) while a bystander in another room keeps editing, and a
relay is framed once for all its recipients (collab.api.frames).

What is asserted is work done (collab_inflated_bytes_total, frames made, the
close code only the edge's bound gives), never time."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import websockets
from pycrdt import write_var_uint
from websockets.frames import Frame, Opcode

from collab.api.forwarded import TrustedProxies
from collab.api.socket import SocketConnection
from collab.errors import CloseCode
from tests.integration.test_http_edge import WS_HANDSHAKE, bystander
from tests.support.server import RunningServer, metric_value, run_server
from tests.support.waiting import TIMEOUT_S, eventually
from tests.support.yclient import YClient, text_edits

BOMB_BYTES = 30 * 1024 * 1024  # under the 32 MiB message limit: only the kind's limit refuses it


def inflated(server: RunningServer) -> float:
    return metric_value(server.runtime.metrics, "collab_inflated_bytes_total")


async def close_code_after(ws: websockets.ClientConnection) -> int | None:
    """Read until the server closes; its close code."""
    with contextlib.suppress(websockets.ConnectionClosed):
        async with asyncio.timeout(TIMEOUT_S):
            while True:
                await ws.recv()
    return ws.close_code


@contextlib.asynccontextmanager
async def hostile(
    server: RunningServer, **options: object
) -> AsyncIterator[websockets.ClientConnection]:
    async with websockets.connect(server.ws_url("target"), max_size=None, **options) as ws:  # type: ignore[arg-type]
        yield ws


async def test_ws_connections_are_served_by_the_edge_protocol_not_asgi(settings):
    async with run_server(settings) as server, hostile(server) as ws:
        await ws.send(b"\x00\x00\x00")  # sync step 1, empty state vector
        await ws.recv()
        served = server.server.server_state.connections
        assert any(isinstance(connection, SocketConnection) for connection in served)


async def test_a_deflate_bomb_on_awareness_is_refused_before_it_is_inflated(settings):
    limit = settings.max_awareness_bytes
    async with run_server(settings) as server, bystander(server):
        before = inflated(server)
        async with hostile(server, compression="deflate") as ws:
            # An awareness message: type 1, a length, then megabytes of zeros (~1000:1).
            await ws.send(b"\x01" + write_var_uint(BOMB_BYTES) + bytes(BOMB_BYTES))
            assert await close_code_after(ws) == CloseCode.AWARENESS_TOO_LARGE
        assert inflated(server) - before <= limit + 64 * 1024


async def test_a_deflate_bomb_on_sync_step_1_is_refused_before_it_is_inflated(settings):
    async with run_server(settings.replace(max_state_vector_entries=1000)) as server:
        async with bystander(server):
            before = inflated(server)
            async with hostile(server, compression="deflate") as ws:
                await ws.send(b"\x00\x00" + write_var_uint(BOMB_BYTES) + bytes(BOMB_BYTES))
                assert await close_code_after(ws) == CloseCode.MESSAGE_TOO_BIG
            assert inflated(server) - before <= 1000 * 13 + 64 * 1024


async def test_a_giant_state_vector_is_refused_before_it_is_decoded(settings):
    entries = 5000
    vector = write_var_uint(entries) + b"".join(
        write_var_uint(client) + write_var_uint(1) for client in range(1, entries + 1)
    )
    async with run_server(settings.replace(max_state_vector_entries=1000)) as server:
        async with bystander(server), hostile(server, compression=None) as ws:
            await ws.send(b"\x00\x00" + write_var_uint(len(vector)) + vector)
            assert await close_code_after(ws) == CloseCode.MESSAGE_TOO_BIG
            assert "COLLAB_MAX_STATE_VECTOR_ENTRIES" in (ws.close_reason or "")


async def close_code_of_unfinished(ws: websockets.ClientConnection, *parts: bytes) -> int | None:
    """Send `parts` as the fragments of one message whose last fragment never
    comes; the code the server closes with."""
    never = asyncio.Event()

    async def fragments() -> AsyncIterator[bytes]:
        for part in parts:
            yield part
        await never.wait()
        yield b""

    sending = asyncio.create_task(ws.send(fragments()))
    try:
        return await close_code_after(ws)
    finally:
        sending.cancel()
        with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
            await sending


async def test_a_fragmented_message_never_finished_is_closed(settings):
    async with run_server(settings.replace(request_timeout_s=0.5)) as server:
        async with bystander(server), hostile(server, compression=None) as ws:
            # An update begins, and never ends.
            assert await close_code_of_unfinished(ws, b"\x00\x02") == CloseCode.IDLE_TIMEOUT
        refused = metric_value(
            server.runtime.metrics, "collab_limit_refusals_total", limit="message_timeout"
        )
        assert refused == 1


async def test_fragments_are_counted_against_the_kind_limit_as_they_arrive(settings):
    async with run_server(settings.replace(max_awareness_bytes=500)) as server:
        async with bystander(server), hostile(server, compression=None) as ws:
            # 1,000 bytes of awareness, refused before the final fragment.
            parts = [b"\x01\x7f", *(bytes(100) for _ in range(10))]
            code = await close_code_of_unfinished(ws, *parts)
            assert code == CloseCode.AWARENESS_TOO_LARGE


async def test_a_relay_is_framed_and_compressed_once_for_all_recipients(settings):
    async with run_server(settings) as server:
        frames = server.app.state.connections.frames
        clients = [
            await YClient(server.ws_url("fanout")).connect(compression="deflate") for _ in range(10)
        ]
        try:
            framed, compressed = frames.framed, frames.compressed
            clients[0].text.insert(0, "x" * 200)  # over the compression threshold
            for client in clients:
                await eventually(lambda c=client: str(c.text) == "x" * 200)
            # One frame for the ten recipients (a keep-alive may slip in).
            assert frames.framed - framed <= 2
            assert frames.compressed - compressed == 1
        finally:
            for client in clients:
                await client.close()


async def test_a_trusted_proxy_names_the_client_in_refusal_logs_as_for_http(settings, caplog):
    async with run_server(settings.replace(auth_secret="s" * 32)) as server:
        url = server.ws_url("doc") + "?token=not-a-token"
        caplog.set_level("INFO", logger="collab")
        # From 127.0.0.1, a trusted proxy by uvicorn's default forwarded_allow_ips.
        forwarded = {"X-Forwarded-For": "203.0.113.7, 127.0.0.1"}
        with contextlib.suppress(websockets.InvalidStatus, websockets.ConnectionClosed):
            async with websockets.connect(url, additional_headers=forwarded) as ws:
                await close_code_after(ws)
        refusals = [r.getMessage() for r in caplog.records if " refused " in r.getMessage()]
        assert refusals and "client=203.0.113.7 " in refusals[-1], refusals


def test_only_a_trusted_peer_may_name_the_client():
    proxies = TrustedProxies("127.0.0.1, 10.0.0.0/8")
    assert proxies.client_of("127.0.0.1", ["198.51.100.1, 10.1.2.3"]) == "198.51.100.1"
    assert proxies.client_of("192.0.2.9", ["198.51.100.1"]) is None  # not a proxy of ours
    assert proxies.client_of("127.0.0.1", ["  "]) is None
    assert proxies.client_of("127.0.0.1", ["10.0.0.1", "10.0.0.2"]) == "10.0.0.1"
    assert TrustedProxies("*").client_of("192.0.2.9", ["a, b"]) == "a"


async def test_a_dropped_connection_is_logged_once_with_its_document_and_peer(settings, caplog):
    caplog.set_level("INFO")
    async with run_server(settings) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(f"GET /ws/logged HTTP/1.1\r\nHost: 127.0.0.1\r\n{WS_HANDSHAKE}\r\n".encode())
        assert (await reader.readline()).startswith(b"HTTP/1.1 101 ")
        writer.close()  # gone without a close frame, as a client whose network dropped
        await eventually(lambda: "disconnected (code 1006)" in caplog.text)
    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if m.startswith("doc=logged peer=1 disconnected")]) == 1
    # websockets' own line of it, with no document or peer, is not repeated.
    assert "connection closed" not in messages


def _edit_frames(*updates: bytes) -> bytes:
    """Client frames (masked) of sync updates, back to back, for ONE write."""
    return b"".join(
        Frame(Opcode.BINARY, b"\x00\x02" + write_var_uint(len(u)) + u).serialize(mask=True)
        for u in updates
    )


async def test_edits_read_back_to_back_are_applied_and_relayed_as_one_run(settings):
    """A fast writer's read holds many edits: taken as one run (one Doc
    transaction), so the room relays them in one message (a read may split the
    burst in two), where one by one a tick's edits took a relay per 64."""
    pieces = [f"<{i}>" for i in range(300)]
    async with run_server(settings) as server:
        watcher = await YClient(server.ws_url("target")).connect()
        try:
            async with hostile(server) as ws:
                await ws.recv()  # the server's step 1: joined
                ws.transport.write(_edit_frames(*text_edits(*pieces)))
                await eventually(lambda: str(watcher.text) == "".join(pieces))
            assert watcher.received_updates <= 2, watcher.received_updates
        finally:
            await watcher.close()


async def test_a_malformed_message_in_a_run_closes_its_sender_after_the_edits_before_it(
    settings,
):
    pieces = [f"<{i}>" for i in range(20)]
    updates = text_edits(*pieces)
    # The length says 200 bytes; the frame holds 3 (4400).
    malformed = Frame(Opcode.BINARY, b"\x00\x02\xc8\x01abc").serialize(mask=True)
    async with run_server(settings) as server, bystander(server):
        watcher = await YClient(server.ws_url("target")).connect()
        try:
            async with hostile(server) as ws:
                await ws.recv()
                ws.transport.write(
                    _edit_frames(*updates[:10]) + malformed + _edit_frames(*updates[10:])
                )
                assert await close_code_after(ws) == CloseCode.MALFORMED_MESSAGE
            await eventually(lambda: str(watcher.text) == "".join(pieces[:10]))
        finally:
            await watcher.close()
        assert str(watcher.text) == "".join(pieces[:10]), "nothing after it was applied"
