"""A run of updates one peer sent back to back is applied in one Doc transaction:
one delta to attribute, store and relay, with each update checked as if alone,
and a refusal in the middle leaving exactly what came before it applied."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Text

from collab.errors import DocumentTooLarge, InvalidUpdate, ReadOnlyEdit
from collab.metrics import Metrics
from collab.protocol.codec import SyncUpdate
from collab.rooms.peer import Peer, PeerLimits
from collab.rooms.room import Room
from collab.rooms.room_limits import RoomLimits
from collab.storage.store import AppendUpdate
from tests.support.fakes import RecordingSink, RecordingTransport, make_room, next_tick, queued
from tests.support.yclient import text_edits

_GARBAGE = b"\x01\x02not a yjs update"


def _text(doc: Doc) -> str:
    return str(doc.get("text", type=Text))


def _text_of(updates: list[bytes]) -> str:
    doc: Doc = Doc()
    for update in updates:
        doc.apply_update(update)
    return _text(doc)


async def test_a_run_is_one_transaction_one_row_and_one_relayed_message():
    room, sink, feed, peer = make_room()
    pieces = [f"<{i}>" for i in range(500)]
    transactions: list[bytes] = []
    room.doc.observe(lambda event: transactions.append(event.update))
    assert room.handle_updates(peer, text_edits(*pieces)) is True
    assert len(transactions) == 1, "one Doc transaction for the whole run"
    await next_tick()
    rows = [op for op in sink.ops if isinstance(op, AppendUpdate)]
    assert len(rows) == 1 and _text_of([rows[0].update]) == "".join(pieces)
    [session] = rows[0].sessions
    assert session.inserted == len("".join(pieces)), "attributed as the edits it holds"
    relayed = [m.update for m in queued(peer) if isinstance(m, SyncUpdate)]
    assert len(relayed) == 1 and _text_of(relayed) == "".join(pieces)
    assert [u for u, _ in feed.updates] == [rows[0].update], "published as stored"


async def test_a_refused_update_ends_the_run_after_what_came_before_it():
    room, sink, _, peer = make_room()
    first, second, third = text_edits("a", "b", "c")
    with pytest.raises(InvalidUpdate):
        room.handle_updates(peer, [first, second, _GARBAGE, third])
    assert _text(room.doc) == "ab", "those before it applied, none after it"
    await next_tick()
    rows = [op.update for op in sink.ops if isinstance(op, AppendUpdate)]
    assert _text_of(rows) == "ab", "and stored"


async def test_a_run_that_changes_nothing_reports_no_change():
    room, _, _, peer = make_room()
    edits = text_edits("x", "y")
    assert room.handle_updates(peer, edits) is True
    assert room.handle_updates(peer, edits) is False, "duplicates: nothing new"


async def test_a_read_only_peers_run_is_refused_and_not_applied():
    room, _, _, _ = make_room()
    reader = Peer(RecordingTransport(), "doc", PeerLimits(), Metrics(), is_read_only=True)
    room.add_peer(reader)
    with pytest.raises(ReadOnlyEdit):
        room.handle_updates(reader, text_edits("sneaky", " edit"))
    assert _text(room.doc) == ""


async def test_the_document_limit_counts_the_whole_run_before_the_observer_does():
    """Each update fits alone; the run would not: refused at the one that crosses."""
    limit = 4096
    room = Room("doc", Doc(), RecordingSink(), limits=RoomLimits(max_document_bytes=limit))
    pieces = ["x" * 1000] * 6
    with pytest.raises(DocumentTooLarge):
        room.apply_updates(text_edits(*pieces))
    applied = len(_text(room.doc))
    assert 0 < applied < 6000 and applied % 1000 == 0
    assert len(room.doc.get_update()) <= limit
