"""A closed room writes nothing, and learns nothing it could later write: catching
it up from storage, capturing it for a snapshot, saving one of it. On fakes (no
database): what the room hands its sink is the whole story."""

from __future__ import annotations

import pytest
from pycrdt import Doc, Text

from collab.errors import CloseCode, DocumentNotFound
from collab.metrics import Metrics
from collab.rooms.commit_path import RoomClosed
from collab.rooms.compaction import Compactor
from collab.rooms.loading import LoadedDocument, catch_up
from collab.storage.store import StoredDocument
from tests.support.fakes import make_room
from tests.support.yclient import text_edits


def _loaded(row_ids: list[int], *pieces: str, incarnation: int = 0) -> LoadedDocument:
    """What loading a document whose log holds `pieces` (as rows `row_ids`) gives."""
    updates = text_edits(*pieces)
    doc: Doc = Doc()
    for update in updates:
        doc.apply_update(update)
    stored = StoredDocument(None, updates, row_ids=row_ids, incarnation=incarnation)
    return LoadedDocument(stored, doc, tuple(row_ids))


async def test_catching_up_an_open_room_applies_the_rows_and_claims_them():
    room, _, _, _ = make_room()
    assert catch_up(room, _loaded([7, 8], "theirs", " too"))
    assert str(room.doc.get("text", type=Text)) == "theirs too"
    assert sorted(room.ledger.capture(room.doc.get_update()).row_ids) == [7, 8]


async def test_catching_up_a_closed_room_claims_no_row_it_did_not_apply():
    """A closed room applies nothing; were it to claim the rows, a snapshot of it
    would delete rows whose content it lacks."""
    room, _, _, _ = make_room()
    room.close(CloseCode.NORMAL, "unloaded")
    assert not catch_up(room, _loaded([7], "theirs"))
    assert str(room.doc.get("text", type=Text)) == ""
    assert room.ledger.row_ids == set()
    assert room.ledger.capture(room.doc.get_update()).row_ids == ()


async def test_catching_up_a_room_whose_document_was_deleted_since_applies_nothing():
    room, _, _, _ = make_room()
    room.incarnation = 0
    assert not catch_up(room, _loaded([3], "the next document", incarnation=1))
    assert str(room.doc.get("text", type=Text)) == "" and room.ledger.row_ids == set()


async def test_a_closed_room_refuses_a_capture_and_a_snapshot():
    room, sink, _, _ = make_room()
    room.doc.get("text", type=Text).insert(0, "kept")
    compactor = Compactor(None, sink, Metrics(), auto_version_window_s=0)  # type: ignore[arg-type]
    room.close(CloseCode.NORMAL, "unloaded")
    written = list(sink.ops)  # closing submits what was not submitted yet, once
    with pytest.raises(RoomClosed):
        room.capture()
    with pytest.raises(RoomClosed):
        await compactor.snapshot(room)
    assert room.submit_edits() is None
    assert sink.ops == written, "nothing written after the close"


async def test_a_snapshot_of_a_room_closed_by_its_deletion_is_document_not_found():
    room, sink, _, _ = make_room()
    capture = room.capture()
    compactor = Compactor(None, sink, Metrics(), auto_version_window_s=0)  # type: ignore[arg-type]
    room.close(CloseCode.DOCUMENT_DELETED, "document deleted")
    with pytest.raises(DocumentNotFound):
        await compactor.snapshot(room, capture=capture)
    assert sink.ops == []
