"""The room's second entry path - what other processes made durable - and
presence across processes, with in-memory fakes (no sockets, no database)."""

from __future__ import annotations

import asyncio

from pycrdt import Awareness, Doc, Text

from collab.metrics import Metrics
from collab.protocol.codec import (
    AwarenessUpdate,
    SyncUpdate,
    decode_awareness_update,
    decode_message,
)
from collab.rooms.peer import Peer, PeerLimits
from collab.rooms.room import Room
from collab.storage.store import AppendUpdate, WriteOp
from tests.helpers import RecordingTransport, text_edits


class RecordingSink:
    """A writer that commits at once, numbering rows like the log does."""

    is_failing = False

    def __init__(self) -> None:
        self.ops: list[WriteOp | None] = []

    def submit(self, op: WriteOp | None) -> asyncio.Future[int | None]:
        self.ops.append(op)
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        future.set_result(len(self.ops) if isinstance(op, AppendUpdate) else None)
        return future

    def pending_for(self, document: str) -> int:
        return 0


class RecordingFeed:
    def __init__(self) -> None:
        self.updates: list[tuple[bytes, int]] = []
        self.awareness: list[bytes] = []

    def publish_update(self, document: str, update: bytes, row_id: int) -> None:
        self.updates.append((update, row_id))

    def publish_awareness(self, document: str, payload: bytes) -> None:
        self.awareness.append(payload)


def _room() -> tuple[Room, RecordingSink, RecordingFeed, Peer]:
    sink, feed = RecordingSink(), RecordingFeed()
    room = Room("doc", Doc(), sink, feed=feed)
    peer = Peer(RecordingTransport(), "doc", PeerLimits(), Metrics())
    room.add_peer(peer)
    return room, sink, feed, peer


def _queued(peer: Peer) -> list[object]:
    """What the room has handed the peer (its writer task is not running here)."""
    return [decode_message(m) for m in peer._outbox]


async def test_a_remote_update_is_relayed_at_once_and_never_stored_again():
    room, sink, feed, peer = _room()
    [update] = text_edits("from elsewhere")
    room.apply_remote(update)
    assert [m for m in _queued(peer) if isinstance(m, SyncUpdate)], "relayed to the peers"
    assert sink.ops == [], "already durable: not stored again"
    assert feed.updates == [], "not published back"
    assert room.ledger.applied_ids == set(), "its row is compacted by the process that wrote it"
    assert not room.ledger.is_dirty, "nor does it make a compaction due here"
    room.apply_remote(update)  # a duplicate changes nothing, relays nothing
    assert len([m for m in _queued(peer) if isinstance(m, SyncUpdate)]) == 1


async def test_a_local_update_is_stored_then_relayed_and_published_with_its_row():
    room, sink, feed, peer = _room()
    [update] = text_edits("typed here")
    room.handle(peer, SyncUpdate(update))
    assert sink.ops == [], "stored at the end of the tick, with whatever else it brings"
    await _next_tick()  # the submission, then the commit callback
    assert [type(op) for op in sink.ops] == [AppendUpdate]
    assert feed.updates == [(update, 1)]
    assert room.ledger.applied_ids == {1}


async def test_an_update_whose_past_has_not_arrived_waits_for_it_then_is_relayed():
    room, _, _, peer = _room()
    first, second = text_edits("a", "b")
    room.apply_remote(second)  # depends on `first`: pending inside yrs, not relayed yet
    assert str(room.doc.get("text", type=Text)) == ""
    room.apply_remote(first)
    assert str(room.doc.get("text", type=Text)) == "ab"
    relayed: Doc = Doc()
    for message in _queued(peer):
        if isinstance(message, SyncUpdate):
            relayed.apply_update(message.update)
    assert str(relayed.get("text", type=Text)) == "ab", "the peers got both"


def _presence(client_id: int, clock: int, name: str | None) -> bytes:
    doc = Doc(client_id=client_id)
    awareness = Awareness(doc)
    awareness._meta[client_id] = {"clock": clock - 1, "lastUpdated": 0}
    awareness.set_local_state(None if name is None else {"user": {"name": name}})
    return awareness.encode_awareness_update([client_id])


async def _next_tick() -> None:
    """Presence changes go out at the end of the event-loop tick (coalesced)."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)


async def test_presence_from_another_process_is_relayed_not_republished_and_dies_with_it():
    room, _, feed, peer = _room()
    room.presence.apply_from_process("process-b", _presence(7, 1, "bea"))
    assert 7 in room.awareness.states
    await _next_tick()
    assert feed.awareness == [], "process b published it itself"
    room.presence.remove_process("process-b")
    assert 7 not in room.awareness.states
    await _next_tick()
    removals = [m for m in _queued(peer) if isinstance(m, AwarenessUpdate)]
    assert removals[-1].entries[0].client_id == 7 and removals[-1].entries[0].state is None


async def test_local_presence_is_published_and_a_client_that_moved_is_not_removed():
    room, _, feed, peer = _room()
    room.presence.apply_from_process("process-b", _presence(7, 1, "bea"))
    # Client 7 reconnects here (its old process is about to die) and announces itself.
    room.handle(peer, AwarenessUpdate(_presence(7, 2, "bea"), ()))
    await _next_tick()
    [published] = feed.awareness
    assert decode_awareness_update(published)[0].client_id == 7
    room.presence.remove_process("process-b")
    assert 7 in room.awareness.states, "its presence now belongs to this process"
    room.remove_peer(peer)
    assert 7 not in room.awareness.states
    await _next_tick()
    assert decode_awareness_update(feed.awareness[-1])[0].state is None, "removal published"
