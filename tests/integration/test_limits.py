"""Every limit answers with its own close code and leaves the room and the others unharmed."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import websockets
from pycrdt import Text, create_awareness_message

from collab.errors import CloseCode
from tests.support.server import metric_value, run_server
from tests.support.waiting import TIMEOUT_S, eventually
from tests.support.yclient import YClient


async def _healthy_pair(server, document: str = "doc") -> tuple[YClient, YClient]:
    a = await YClient(server.ws_url(document)).connect()
    b = await YClient(server.ws_url(document)).connect()
    return a, b


async def _still_converging(a: YClient, b: YClient, marker: str) -> None:
    a.text.insert(len(a.text), marker)
    await eventually(lambda: str(b.text) == str(a.text), what="healthy clients converge")


async def _refusal(url: str) -> tuple[int, str]:
    """Connect, read until the server closes; the close code and reason it sent."""
    async with websockets.connect(url) as ws:
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                await asyncio.wait_for(ws.recv(), TIMEOUT_S)
    assert ws.close_code is not None
    return ws.close_code, ws.close_reason or ""


async def _metric(server, name: str) -> float:
    async with httpx.AsyncClient() as http:
        body = (await http.get(f"{server.http_url}/metrics")).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


async def test_update_growing_the_document_past_its_limit_is_refused(settings):
    async with run_server(settings.replace(max_document_bytes=4000)) as server:
        a, b = await _healthy_pair(server)
        a.text.insert(0, "x" * 1000)
        await eventually(lambda: len(str(b.text)) == 1000)
        big = YClient(server.ws_url("doc"))
        await big.connect()
        big.text.insert(0, "y" * 5000)
        assert await big.wait_closed() == CloseCode.DOCUMENT_TOO_LARGE
        assert "exceed" in (big.close_reason or "")
        await _still_converging(a, b, "z")
        assert "y" not in str(server.runtime.registry.rooms["doc"].doc.get("text", type=Text))
        for client in (a, b):
            await client.close()


async def test_oversized_awareness_state_is_refused(settings):
    async with run_server(settings.replace(max_awareness_bytes=500)) as server:
        a, b = await _healthy_pair(server)
        await a.set_presence({"user": {"name": "Ada"}})
        await eventually(lambda: b.presence_of_others())
        bad = await YClient(server.ws_url("doc")).connect()
        await bad.set_presence({"user": {"name": "x" * 1000}})
        assert await bad.wait_closed() == CloseCode.AWARENESS_TOO_LARGE
        assert all("x" * 1000 not in str(s) for s in b.presence_of_others().values())
        await _still_converging(a, b, "ok")
        for client in (a, b):
            await client.close()


async def test_connection_limits_per_document_and_in_all(settings):
    async with run_server(
        settings.replace(max_connections_per_document=2, max_connections=3)
    ) as server:
        a, b = await _healthy_pair(server)
        code, reason = await _refusal(server.ws_url("doc"))
        assert code == CloseCode.TRY_AGAIN_LATER and "document full" in reason
        other = await YClient(server.ws_url("other")).connect()  # the 3rd in all
        code, reason = await _refusal(server.ws_url("another"))
        assert code == CloseCode.TRY_AGAIN_LATER and "server full" in reason
        await _still_converging(a, b, "still fine")
        assert await _metric(server, "collab_limit_refusals_total") == 2
        await other.close()
        # A slot freed is a slot usable again.
        retry = await YClient(server.ws_url("another")).connect()
        await retry.close()
        for client in (a, b):
            await client.close()


async def test_concurrent_first_joins_cannot_exceed_the_connection_limit(settings):
    """Twenty clients open twenty different documents at once: each join awaits a
    load, and the slot is taken before that await, so only the connections the
    limit has room for are admitted; the others are told to retry (1013)."""
    async with run_server(settings.replace(max_connections=5)) as server:
        a, b = await _healthy_pair(server, "bystander")  # two of the five
        release = asyncio.Event()

        async def first_join(document: str) -> int | None:
            """None once synced (then it holds its slot), or the close code."""
            try:
                async with websockets.connect(server.ws_url(document)) as ws:
                    await ws.send(b"\x00\x00\x01\x00")  # step 1: empty state vector
                    while (await asyncio.wait_for(ws.recv(), TIMEOUT_S))[:2] != b"\x00\x01":
                        pass
                    await release.wait()
                    return None
            except websockets.ConnectionClosed as closed:
                return closed.rcvd.code if closed.rcvd else -1

        joins = [asyncio.create_task(first_join(f"first-{i}")) for i in range(20)]
        registry = server.runtime.registry
        await eventually(
            lambda: sum(join.done() for join in joins) == 17, what="the refused ones answered"
        )
        assert registry.connections == 5
        await _still_converging(a, b, "during the burst")
        release.set()
        outcomes = await asyncio.gather(*joins)
        assert outcomes.count(None) == 3
        assert outcomes.count(CloseCode.TRY_AGAIN_LATER) == 17
        await eventually(lambda: registry.connections == 2, what="slots given back")
        for client in (a, b):
            await client.close()


async def test_a_flood_past_the_rate_limit_is_paced_not_closed(settings):
    """Past its rate limit a connection is not refused: its next read waits for a
    token, so the rest of its flood waits unread in its own socket (TCP flow
    control). It stays connected and keeps receiving; the room carries on."""
    # A short keep-alive: the server notices the aborted flooder at its next send.
    limited = settings.replace(rate_limit_per_s=5, rate_limit_burst=20, keepalive_interval_s=0.5)
    async with run_server(limited) as server:
        metrics = server.runtime.metrics
        a, b = await _healthy_pair(server)
        flooder = await YClient(server.ws_url("doc")).connect()
        tiny = create_awareness_message(b"\x00")  # an awareness update with no entries
        for _ in range(2_000):
            await flooder.send_raw(tiny)
        await eventually(lambda: metric_value(metrics, "collab_paced_reads_total") > 0)
        await _still_converging(a, b, "during the flood")
        await eventually(lambda: "during the flood" in str(flooder.text), what="still receives")
        assert flooder.close_code is None
        # 20 at once, then 5 a second: most of the flood has not even been read.
        read = metric_value(metrics, "collab_messages_received_total", type="awareness")
        assert read < 1_000
        await flooder.abort()  # its close frame would wait behind its unread flood
        for client in (a, b):
            await client.close()


async def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(settings):
    async with run_server(settings.replace(idle_timeout_s=0.5)) as server:
        quiet = await YClient(server.ws_url("doc")).connect()
        chatty = await YClient(server.ws_url("doc")).connect()

        async def keep_talking() -> None:
            while True:
                await chatty.set_presence({"user": {"name": "chatty"}})
                await asyncio.sleep(0.1)

        talker = asyncio.create_task(keep_talking())
        try:
            assert await quiet.wait_closed(TIMEOUT_S) == CloseCode.IDLE_TIMEOUT
            assert chatty.close_code is None
        finally:
            talker.cancel()
        await chatty.close()


async def test_a_peer_that_never_answers_pings_is_dropped(settings):
    async with run_server(
        settings.replace(ws_ping_interval_s=0.2, ws_ping_timeout_s=0.3)
    ) as server:
        # A raw TCP client: it completes the handshake, then neither reads nor pongs.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            b"GET /ws/doc HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        await writer.drain()
        await reader.readuntil(b"\r\n\r\n")
        registry = server.runtime.registry
        await eventually(lambda: registry.connections == 1, what="joined")
        await eventually(lambda: registry.connections == 0, what="dropped after missed pongs")
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_a_paced_client_is_not_dropped_for_a_pong_stuck_behind_its_backlog(settings):
    """The pong of a client being paced waits in its socket behind the messages it
    sent before it; the client is evidently alive, so the ping check waits too."""
    paced = settings.replace(
        rate_limit_per_s=20,
        rate_limit_burst=1,
        ws_ping_interval_s=0.1,
        ws_ping_timeout_s=0.1,
        keepalive_interval_s=0.5,
    )
    async with run_server(paced) as server:
        metrics = server.runtime.metrics
        flooder = await YClient(server.ws_url("doc")).connect()
        tiny = create_awareness_message(b"\x00")  # an awareness update with no entries
        for _ in range(400):
            await flooder.send_raw(tiny)
        # 40 paced reads take 2 s at 20 a second: many ping timeouts of 0.1 s.
        await eventually(lambda: metric_value(metrics, "collab_paced_reads_total") >= 40)
        assert flooder.close_code is None
        assert metric_value(metrics, "collab_connections_closed_total", code="1011") == 0
        await flooder.abort()


async def test_least_recently_used_idle_documents_unload_first(settings):
    limited = settings.replace(max_loaded_documents=2, room_grace_s=3600)
    async with run_server(limited) as server:
        registry = server.runtime.registry
        for name in ("first", "second"):
            client = await YClient(server.ws_url(name)).connect()
            client.text.insert(0, name)
            await eventually(lambda c=client: c.received_updates == 1)
            await client.close()
            await eventually(lambda n=name: not registry.rooms[n].peers)
        third = await YClient(server.ws_url("third")).connect()
        assert set(registry.rooms) == {"second", "third"}
        # The evicted document was saved first: it comes back whole.
        await third.close()
        again = await YClient(server.ws_url("first")).connect()
        assert str(again.text) == "first"
        assert "second" not in registry.rooms  # now the least recently used
        # With every loaded document in use, a new one is refused, not forced in.
        busy = await YClient(server.ws_url("third")).connect()
        code, reason = await _refusal(server.ws_url("fourth"))
        assert code == CloseCode.TRY_AGAIN_LATER and "none idle" in reason
        assert await _metric(server, "collab_rooms_evicted_total") == 2
        for client in (again, busy):
            await client.close()


async def test_metrics_count_what_happens(connect, server):
    a = await connect("doc")
    b = await connect("doc")
    a.text.insert(0, "hello")
    await eventually(lambda: str(b.text) == "hello")
    bad = await connect("doc")
    await bad.send_raw(b"\x00\x02\x80")
    assert await bad.wait_closed() == CloseCode.MALFORMED_MESSAGE
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{server.http_url}/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    body = response.text
    assert "collab_connections 2.0" in body
    assert "collab_rooms_loaded 1.0" in body
    # the malformed frame counts too: it claimed to be an update
    assert 'collab_messages_received_total{type="sync_update"} 2.0' in body
    assert 'collab_messages_sent_total{type="sync_update"} 2.0' in body  # echo + relay
    assert 'collab_connections_closed_total{code="4400"} 1.0' in body
    assert "collab_updates_persisted_total 1.0" in body
    assert "collab_persist_latency_seconds_count" in body
    assert await _metric(server, "collab_received_bytes_total") > 0


async def test_edits_past_the_rate_limit_are_paced_by_storage_not_refused(settings):
    """Edits that change the document are not charged to the rate limit (storage
    paces them): a client sending more than the default burst at once is neither
    closed nor slowed to the rate, and the others see every edit, in order."""
    async with run_server(settings) as server:
        assert settings.rate_limit_burst < 3000, "the default limits"
        a, b = await _healthy_pair(server)
        sender = await YClient(server.ws_url("doc")).connect()
        for i in range(3000):
            sender.text.insert(len(sender.text), str(i % 10))
        expected = "".join(str(i % 10) for i in range(3000))
        await eventually(lambda: str(b.text) == expected, what="all edits relayed")
        assert sender.close_code is None
        await _still_converging(a, b, "!")
        for client in (a, b, sender):
            await client.close()
