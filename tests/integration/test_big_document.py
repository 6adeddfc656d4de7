"""Big documents: joiners share one encoded step 2, big sends go through the
server-wide gate a few at a time, and a joiner that never reads stalls no one."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
import websockets
from pycrdt import Doc, create_sync_message
from websockets.asyncio.client import ClientConnection

from collab.errors import CloseCode
from collab.metrics import Metrics
from collab.protocol.codec import KEEPALIVE_MESSAGE, encode_update
from collab.rooms.peer import Peer, PeerLimits
from collab.rooms.send_gate import BigSendGate
from tests.support.fakes import RecordingTransport
from tests.support.server import RunningServer, metric_value, run_server
from tests.support.waiting import TIMEOUT_S, eventually
from tests.support.yclient import YClient

MIB = 1 << 20


async def upload(server: RunningServer, document: str, mebibytes: int) -> YClient:
    """A client that wrote `mebibytes` MiB of text, one MiB per update, all committed
    (the server echoes an update to its sender once it is durable)."""
    uploader = await YClient(server.ws_url(document)).connect()
    for i in range(mebibytes):
        uploader.text.insert(len(uploader.text), chr(ord("a") + i % 26) * MIB)
    await eventually(uploader.is_saved, what="upload committed")
    return uploader


@contextlib.asynccontextmanager
async def never_reading(url: str) -> AsyncIterator[ClientConnection]:
    """A client that asks for the whole document, then stops reading its socket
    (max_queue=0: reading pauses once one frame is buffered), like a frozen tab."""
    stalled = await websockets.connect(
        url, max_queue=0, max_size=None, compression=None, ping_interval=None
    )
    try:
        await stalled.send(create_sync_message(Doc()))
        yield stalled
    finally:
        stalled.transport.abort()


async def test_simultaneous_joiners_of_a_big_document_share_one_reply_and_all_converge(
    server,
):
    uploader = await upload(server, "big", 3)
    joiners = [YClient(server.ws_url("big")) for _ in range(6)]
    try:
        await asyncio.gather(*(joiner.connect() for joiner in joiners))
        expected = str(uploader.text)
        assert len(expected) == 3 * MIB
        assert all(str(joiner.text) == expected for joiner in joiners)
        # One encoding answered them all (same empty state vector, same Doc).
        assert _shared_replies(server) == len(joiners) - 1
    finally:
        await asyncio.gather(uploader.close(), *(joiner.close() for joiner in joiners))


async def test_a_change_between_joins_is_not_answered_from_the_shared_reply(server):
    uploader = await upload(server, "big", 2)
    first = await YClient(server.ws_url("big")).connect()
    uploader.text.insert(0, "tail of an edit made after the first join")
    await eventually(lambda: first.text.to_py().startswith("tail"), what="edit relayed")
    second = await YClient(server.ws_url("big")).connect()
    third = await YClient(server.ws_url("big")).connect()
    try:
        assert str(second.text) == str(third.text) == str(uploader.text)
        assert str(second.text).startswith("tail")
        # The second join had to re-encode; the third shared the second's reply.
        assert _shared_replies(server) == 1
    finally:
        await asyncio.gather(*(c.close() for c in (uploader, first, second, third)))


async def test_a_joiner_that_never_reads_a_big_document_does_not_stall_the_others(server):
    # One slot: the stalled joiner's 12 MiB cannot leave the server's buffer (the
    # kernel takes a few MiB), so only the drain timeout frees the slot.
    gate = server.app.state.connections.gate = BigSendGate(
        slots=1, min_bytes=MIB, drain_timeout_s=0.2
    )
    uploader = await upload(server, "big", 12)
    room = server.runtime.registry.rooms["big"]
    async with never_reading(server.ws_url("big")):
        await eventually(lambda: len(room.peers) == 2, what="stalled joiner in the room")
        joiners = [YClient(server.ws_url("big")) for _ in range(3)]
        try:
            await asyncio.gather(*(joiner.connect() for joiner in joiners))
            assert all(str(joiner.text) == str(uploader.text) for joiner in joiners)
            assert gate.waiting == 0
        finally:
            await asyncio.gather(*(joiner.close() for joiner in joiners))
    await uploader.close()


async def test_joiners_that_never_read_one_big_document_do_not_delay_a_big_join_of_another(
    server,
):
    # Two slots and a drain timeout far beyond the test. Before: the two stalled
    # joiners of "big" held both slots, and a joiner of "other" waited for them.
    gate = server.app.state.connections.gate = BigSendGate(
        slots=2, min_bytes=MIB, drain_timeout_s=3600
    )
    other_uploader = await upload(server, "other", 2)
    uploader = await upload(server, "big", 12)
    room = server.runtime.registry.rooms["big"]
    async with never_reading(server.ws_url("big")), never_reading(server.ws_url("big")):
        await eventually(lambda: len(room.peers) == 3, what="stalled joiners in the room")
        await eventually(
            lambda: gate.held_by("big") + gate.waiting == 2, what="stalled joiners sending"
        )
        joiner = YClient(server.ws_url("other"))
        try:
            await asyncio.wait_for(joiner.connect(), TIMEOUT_S)
            assert str(joiner.text) == str(other_uploader.text)
            assert len(str(joiner.text)) == 2 * MIB
            assert gate.held_by("big") == 1, "one slot for the stalled document"
        finally:
            await joiner.close()
    await asyncio.gather(uploader.close(), other_uploader.close())


async def test_a_joiner_waiting_for_a_send_slot_is_kept_alive_then_served(settings):
    # The only slot is held by a joiner that does not read (and a drain timeout far
    # beyond the test), so the next joiner waits; y-websocket would drop a
    # connection that hears nothing for 30 s, so it must hear keep-alives meanwhile.
    async with run_server(settings.replace(keepalive_interval_s=0.2)) as server:
        gate = server.app.state.connections.gate = BigSendGate(
            slots=1, min_bytes=MIB, drain_timeout_s=3600
        )
        uploader = await upload(server, "big", 12)
        room = server.runtime.registry.rooms["big"]
        waiting = YClient(server.ws_url("big"))
        try:
            async with never_reading(server.ws_url("big")):
                await eventually(lambda: len(room.peers) == 2, what="stalled joiner in the room")
                await waiting.connect(wait_synced=False)
                await eventually(lambda: gate.waiting == 1, what="second joiner waiting")
                heard = waiting.received_messages
                await eventually(lambda: waiting.received_messages >= heard + 3, what="keep-alives")
                assert not waiting.synced.is_set()
            # The stalled joiner is gone: its slot passes to the one waiting.
            await asyncio.wait_for(waiting.synced.wait(), 10)
            assert str(waiting.text) == str(uploader.text)
            assert gate.waiting == 0
        finally:
            await asyncio.gather(uploader.close(), waiting.close())


# -- the gate on its own ------------------------------------------------------


async def test_send_gate_gives_a_document_one_slot_while_another_document_gets_the_other():
    gate = BigSendGate(slots=2)
    big_first, big_second = gate.request("big"), gate.request("big")
    other = gate.request("other")
    third = gate.request("third")
    assert big_first.done() and not big_second.done(), "one slot per document"
    assert other.done(), "a slot was left for another document"
    assert not third.done(), "never more slots than it has"
    gate.give_back(big_first)
    assert big_second.done() and not third.done(), "the next in line, by request order"
    gate.give_back(third)  # withdrawn before its turn
    assert gate.waiting == 0
    gate.give_back(big_second)
    gate.give_back(other)
    # Both slots are free again, and only two.
    again = [gate.request(document) for document in ("a", "b", "c")]
    assert [grant.done() for grant in again] == [True, True, False]


async def test_send_gate_takes_documents_in_turn():
    gate = BigSendGate(slots=1)
    holder = gate.request("big")
    waiting = [(d, gate.request(d)) for d in ("big", "big", "big", "other", "third")]
    gate.give_back(holder)
    served = []
    while waiting:
        [(document, grant)] = [(d, g) for d, g in waiting if g.done()]
        served.append(document)
        waiting.remove((document, grant))
        gate.give_back(grant)
    # Request order would have served every "big" first.
    assert served == ["big", "other", "third", "big", "big"]


async def test_send_gate_refuses_to_have_no_slot():
    with pytest.raises(ValueError):
        BigSendGate(slots=0)


async def test_a_big_message_is_sent_between_keep_alives_and_a_small_one_alone():
    # Before: y-websocket's liveness window restarts as the transfer begins. After:
    # its send returns only once the big one has drained (the gate's signal).
    transport, gate = RecordingTransport(), BigSendGate(slots=1, min_bytes=MIB)
    peer = Peer(transport, "big", PeerLimits(), Metrics(), gate=gate)
    writer = asyncio.create_task(peer.run_sender())
    big, small = b"\x00\x01" + b"x" * MIB, encode_update(b"\x00\x00")
    peer.send(big)
    peer.send(small)
    try:
        await eventually(lambda: len(transport.sent) == 4)
        assert transport.sent == [KEEPALIVE_MESSAGE, big, KEEPALIVE_MESSAGE, small]
        assert gate.request("big").done()  # the slot was given back
    finally:
        peer.close(CloseCode.NORMAL, "")
        await writer


class BackedUpTransport(RecordingTransport):
    """A socket whose buffer is full until `drain()`: a send waits before writing
    anything, as uvicorn's does."""

    def __init__(self) -> None:
        super().__init__()
        self.writable = asyncio.Event()

    async def send_bytes(self, data: bytes) -> None:
        await self.writable.wait()
        await super().send_bytes(data)


async def test_a_sender_whose_socket_stays_backed_up_gives_its_slot_back_and_sends_later():
    # Before: the sender waited on its socket holding the slot, for as long as
    # the client did not read (its previous big message still in the buffer).
    transport, gate = BackedUpTransport(), BigSendGate(slots=1, min_bytes=MIB, drain_timeout_s=0.05)
    peer = Peer(transport, "stalled", PeerLimits(), Metrics(), gate=gate)
    sender = asyncio.create_task(peer.run_sender())
    big = b"\x00\x01" + b"x" * MIB
    peer.send(big)
    try:
        await eventually(lambda: gate.held_by("stalled") == 1, what="the slot taken")
        other = gate.request("other")
        await eventually(other.done, what="the slot given back")
        assert transport.sent == [], "nothing of the big message was written"
        gate.give_back(other)
        transport.writable.set()  # the client reads again
        await eventually(lambda: big in transport.sent, what="big message sent")
        assert transport.sent[transport.sent.index(big) - 1] == KEEPALIVE_MESSAGE
        await eventually(lambda: gate.held_by("stalled") == 0, what="slot given back again")
    finally:
        peer.close(CloseCode.NORMAL, "")
        await asyncio.gather(sender, return_exceptions=True)


def _shared_replies(server: RunningServer) -> float:
    """Step 2 replies handed out without encoding (a metric)."""
    return metric_value(server.runtime.metrics, "collab_sync_replies_shared_total")
