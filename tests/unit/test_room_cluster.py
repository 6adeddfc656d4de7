"""The room's second entry path - what other processes made durable - and
presence across processes, with in-memory fakes (no sockets, no database)."""

from __future__ import annotations

from pycrdt import Awareness, Doc, Text

from collab.protocol.codec import (
    AwarenessUpdate,
    SyncUpdate,
    decode_awareness_update,
)
from collab.storage.store import AppendUpdate
from tests.support.fakes import make_room, next_tick, queued
from tests.support.yclient import text_edits


async def test_a_remote_update_is_relayed_at_once_and_never_stored_again():
    room, sink, feed, peer = make_room()
    [update] = text_edits("from elsewhere")
    room.apply_remote(update)
    assert [m for m in queued(peer) if isinstance(m, SyncUpdate)], "relayed to the peers"
    assert sink.ops == [], "already durable: not stored again"
    assert feed.updates == [], "not published back"
    assert room.ledger.row_ids == set(), "its row is compacted by the process that wrote it"
    assert not room.ledger.is_dirty, "nor does it make a compaction due here"
    room.apply_remote(update)  # a duplicate changes nothing, relays nothing
    assert len([m for m in queued(peer) if isinstance(m, SyncUpdate)]) == 1


async def test_a_local_update_is_stored_then_relayed_and_published_with_its_row():
    room, sink, feed, peer = make_room()
    [update] = text_edits("typed here")
    room.handle(peer, SyncUpdate(update))
    assert sink.ops == [], "stored at the end of the tick, with whatever else it brings"
    await next_tick()  # the submission, then the commit callback
    assert [type(op) for op in sink.ops] == [AppendUpdate]
    assert feed.updates == [(update, 1)]
    assert room.ledger.row_ids == {1}


async def test_an_update_whose_past_has_not_arrived_waits_for_it_then_is_relayed():
    room, _, _, peer = make_room()
    first, second = text_edits("a", "b")
    room.apply_remote(second)  # depends on `first`: pending inside yrs, not relayed yet
    assert str(room.doc.get("text", type=Text)) == ""
    room.apply_remote(first)
    assert str(room.doc.get("text", type=Text)) == "ab"
    relayed: Doc = Doc()
    for message in queued(peer):
        if isinstance(message, SyncUpdate):
            relayed.apply_update(message.update)
    assert str(relayed.get("text", type=Text)) == "ab", "the peers got both"


def _presence(client_id: int, clock: int, name: str | None) -> bytes:
    doc = Doc(client_id=client_id)
    awareness = Awareness(doc)
    awareness._meta[client_id] = {"clock": clock - 1, "lastUpdated": 0}
    awareness.set_local_state(None if name is None else {"user": {"name": name}})
    return awareness.encode_awareness_update([client_id])


async def test_presence_from_another_process_is_relayed_not_republished_and_dies_with_it():
    room, _, feed, peer = make_room()
    room.presence.apply_from_process("process-b", _presence(7, 1, "bea"))
    assert 7 in room.awareness.states
    await next_tick()
    assert feed.awareness == [], "process b published it itself"
    room.presence.remove_process("process-b")
    assert 7 not in room.awareness.states
    await next_tick()
    removals = [m for m in queued(peer) if isinstance(m, AwarenessUpdate)]
    assert removals[-1].entries[0].client_id == 7 and removals[-1].entries[0].state is None


async def test_local_presence_is_published_and_a_client_that_moved_is_not_removed():
    room, _, feed, peer = make_room()
    room.presence.apply_from_process("process-b", _presence(7, 1, "bea"))
    # Client 7 reconnects here (its old process is about to die) and announces itself.
    payload = _presence(7, 2, "bea")
    room.handle(peer, AwarenessUpdate(payload, decode_awareness_update(payload)))
    await next_tick()
    [published] = feed.awareness
    assert decode_awareness_update(published)[0].client_id == 7
    room.presence.remove_process("process-b")
    assert 7 in room.awareness.states, "its presence now belongs to this process"
    room.remove_peer(peer)
    assert 7 not in room.awareness.states
    await next_tick()
    assert decode_awareness_update(feed.awareness[-1])[0].state is None, "removal published"
