"""A server edit (`Room.apply_server_edit`, what the HTTP editing API uses) is its
own log row, relayed once committed, and refused whole when the room cannot
take it."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Text

from collab.errors import CloseCode, StorageUnavailable
from collab.protocol.codec import SyncUpdate
from collab.rooms.commit_path import RoomClosed
from collab.storage.attribution import Author
from collab.storage.store import AppendUpdate
from tests.support.fakes import make_room, next_tick, queued
from tests.support.yclient import text_edits


def _append(doc: Doc, piece: str) -> None:
    text = doc.get("text", type=Text)
    text.insert(len(text), piece)


async def test_a_server_edit_is_its_own_row_and_relayed_once_committed():
    room, sink, feed, peer = make_room()
    [typed] = text_edits("typed ")
    room.handle(peer, SyncUpdate(typed))  # a client's edit of this tick, not yet submitted
    write = room.apply_server_edit(
        lambda doc: _append(doc, "by the server"), author=Author("robot", is_verified=True)
    )
    assert write is not None
    rows = [op.update for op in sink.ops if isinstance(op, AppendUpdate)]
    assert len(rows) == 2, "the client's edit keeps its own row; the server's is the second"
    assert await write == 2
    await next_tick()  # the relay runs in the write's done callback
    relayed = [m.update for m in queued(peer) if isinstance(m, SyncUpdate)]
    assert relayed[-1] == rows[1] and feed.updates[-1] == (rows[1], 2)
    assert str(room.doc.get("text", type=Text)) == "typed by the server"


async def test_a_server_edit_that_changes_nothing_writes_nothing():
    room, sink, _, _ = make_room()
    assert room.apply_server_edit(lambda doc: None, author=None) is None
    assert sink.ops == []


async def test_a_refused_server_edit_leaves_the_document_as_it_was():
    room, sink, _, _ = make_room()
    sink.is_failing = True
    with pytest.raises(StorageUnavailable):
        room.apply_server_edit(lambda doc: _append(doc, "x"), author=None)
    sink.is_failing = False
    room.close(CloseCode.SERVICE_RESTART, "bye")
    with pytest.raises(RoomClosed):
        room.apply_server_edit(lambda doc: _append(doc, "x"), author=None)
    assert str(room.doc.get("text", type=Text)) == ""
