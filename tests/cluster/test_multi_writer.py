"""Several processes writing one database: exact compaction, compare-and-set on the
snapshot sequence, one compactor at a time, a deletion racing another process's
edit - checked on the real store and real rooms, with no Redis between them (the
worst case: no process hears the others)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest
from pycrdt import Doc, Text

from collab.errors import CloseCode, DocumentNotFound
from collab.metrics import Metrics
from collab.rooms.loading import build_doc, catch_up
from collab.rooms.peer import Peer, PeerLimits
from collab.rooms.registry import LifecyclePolicy, RoomRegistry
from collab.rooms.room import Room
from collab.storage.sql_store import SqlStore
from collab.storage.store import (
    AppendUpdate,
    CompactionBusy,
    DeleteDocument,
    DocumentDeleted,
    SaveSnapshot,
    SnapshotConflict,
    SnapshotKind,
)
from collab.storage.writer import UpdateWriter

pytestmark = pytest.mark.postgres


class SilentTransport:
    async def send_bytes(self, data: bytes) -> None:
        pass

    async def close(self, code: int, reason: str) -> None:
        pass


def _update(text: str) -> bytes:
    doc: Doc = Doc()
    doc.get("text", type=Text).insert(0, text)
    return doc.get_update()


def _text(doc: Doc) -> str:
    return str(doc.get("text", type=Text))


class HeldCommits:
    """The store's commits wait until released: this process's writes are late."""

    def __init__(self, store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
        self.released = asyncio.Event()
        real_commit = store.commit

        async def commit(ops):
            await self.released.wait()
            return await real_commit(ops)

        monkeypatch.setattr(store, "commit", commit)


@dataclass
class Process:
    """What one server process holds: its own store, writer and registry."""

    store: SqlStore
    writer: UpdateWriter
    registry: RoomRegistry
    metrics: Metrics

    async def room(self, name: str) -> Room:
        return await self.registry.open_room(name)


@contextlib.asynccontextmanager
async def _process(url: str) -> AsyncIterator[Process]:
    store = SqlStore(url)
    await store.open()
    metrics = Metrics()
    writer = UpdateWriter(store, metrics=metrics)
    runner = asyncio.create_task(writer.run())
    registry = RoomRegistry(store, writer, LifecyclePolicy(), metrics=metrics)
    try:
        yield Process(store, writer, registry, metrics)
    finally:
        await registry.close()
        await writer.close(runner, 10)
        await store.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, postgres_url) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'collab.db'}"
    return postgres_url


async def test_appends_return_their_log_row_ids_in_order(database_url):
    async with _process(database_url) as process:
        ids = await process.store.commit([AppendUpdate("doc", _update(c)) for c in "abc"])
        assert ids == sorted(ids) and len(set(ids)) == 3
        stored = await process.store.load("doc")
        assert stored.row_ids == ids and stored.snapshot_seq == 0


async def test_a_snapshot_deletes_exactly_its_rows_and_needs_the_current_sequence(
    database_url,
):
    async with _process(database_url) as process:
        store = process.store
        mine = await store.commit([AppendUpdate("doc", _update("mine"))])
        theirs = await store.commit([AppendUpdate("doc", _update("theirs"))])
        state = _update("mine")  # holds "mine" only
        [snapshot_id] = await store.commit(
            [SaveSnapshot("doc", state, row_ids=tuple(mine), base_seq=0)]
        )
        assert isinstance(snapshot_id, int)
        stored = await store.load("doc")
        # The row this snapshot does not hold survives; loading applies it again.
        assert stored.row_ids == theirs and stored.snapshot_seq == 1
        assert sorted(_text(build_doc(stored, "doc"))) == sorted("minetheirs")
        # A snapshot built on sequence 0 would leave out what snapshot 1 holds.
        [declined] = await store.commit(
            [SaveSnapshot("doc", _update("stale"), row_ids=tuple(theirs), base_seq=0)]
        )
        assert isinstance(declined, SnapshotConflict) and declined.current_seq == 1
        assert (await store.load("doc")).row_ids == theirs, "a declined snapshot deletes nothing"


async def test_one_compactor_per_document_at_a_time_on_postgresql(postgres_url):
    async with _process(postgres_url) as process:
        await process.store.commit([AppendUpdate(d, _update("x")) for d in ("doc", "other")])
        other = await asyncpg.connect(postgres_url.replace("+asyncpg", ""))
        try:
            async with other.transaction():
                # Another process is in the middle of saving a snapshot of "doc".
                await other.execute(
                    "SELECT pg_advisory_xact_lock($1, hashtext($2))", 0x636F6C6C, "doc"
                )
                [busy, elsewhere] = await process.store.commit(
                    [SaveSnapshot("doc", _update("x"), base_seq=0), SaveSnapshot("other", b"")]
                )
                assert isinstance(busy, CompactionBusy)
                assert isinstance(elsewhere, int), "other documents compact meanwhile"
            [saved] = await process.store.commit([SaveSnapshot("doc", _update("x"), base_seq=0)])
            assert isinstance(saved, int)
        finally:
            await other.close()


async def test_two_processes_unaware_of_each_other_never_lose_an_update(database_url):
    """The hazard of compacting with several writers: process B's snapshot lacks
    what process A committed meanwhile. B deletes only its own rows; A's later
    snapshot, built on a stale sequence, is declined, catches up and is saved again."""
    async with _process(database_url) as a, _process(database_url) as b:
        await a.store.commit([AppendUpdate("doc", _update("<seed>"))])
        room_a, room_b = await a.room("doc"), await b.room("doc")
        peer = Peer(SilentTransport(), "doc", PeerLimits(), Metrics())
        room_b.add_peer(peer)
        text_a, text_b = room_a.doc.get("text", type=Text), room_b.doc.get("text", type=Text)
        text_a.insert(len(text_a), "<from-a>")
        text_b.insert(len(text_b), "<from-b>")
        await a.writer.flush()
        await b.writer.flush()
        assert await b.registry.compactor.snapshot(room_b) is not None
        assert "<from-a>" not in _text(room_b.doc)
        # A compacts too, on the sequence it loaded: declined, then caught up.
        assert await a.registry.compactor.snapshot(room_a) is not None
        declined = a.metrics.registry.get_sample_value(
            "collab_snapshots_declined_total", {"reason": "conflict"}
        )
        assert declined == 1
        assert "<from-b>" in _text(room_a.doc), "A caught up with B's snapshot"
        stored = await a.store.load("doc")
        assert not stored.updates, "every row is in the newest snapshot"
        final = _text(build_doc(stored, "doc"))
        assert sorted(final.replace("><", ">\n<").split("\n")) == [
            "<from-a>",
            "<from-b>",
            "<seed>",
        ]
        room_b.remove_peer(peer)


async def test_a_pre_restore_version_merged_after_a_conflict_still_shows_the_past(
    database_url,
):
    async with _process(database_url) as a, _process(database_url) as b:
        await a.store.commit([AppendUpdate("doc", _update("v1"))])
        room_a, room_b = await a.room("doc"), await b.room("doc")
        room_b.doc.get("text", type=Text).insert(0, "<b>")
        await b.writer.flush()
        await b.registry.compactor.snapshot(room_b)  # A's sequence is stale now
        before = room_a.capture()
        room_a.doc.get("text", type=Text).insert(0, "<restored>")
        pre_id = await a.registry.compactor.snapshot(
            room_a, SnapshotKind.PRE_RESTORE, capture=before
        )
        assert pre_id is not None
        snapshot = await a.store.get_snapshot("doc", pre_id)
        assert snapshot is not None
        shown = _text(build_doc_from_state(snapshot.state))
        assert "<restored>" not in shown, "the pre-restore version is the state before"
        assert "<b>" in shown and "v1" in shown, "and it holds the snapshot it replaced"


def build_doc_from_state(state: bytes) -> Doc:
    doc: Doc = Doc()
    doc.apply_update(state)
    return doc


@pytest.mark.parametrize("is_name_reused", [False, True])
async def test_a_deletion_racing_an_edit_on_another_process_keeps_the_document_deleted(
    database_url, monkeypatch, is_name_reused
):
    """B's edit commits right after A's deletion (the same instant, in a cluster:
    B has not heard of the deletion yet). It must not bring the document back,
    nor land in the next document of that name; B's clients are told (4410)."""
    async with _process(database_url) as a, _process(database_url) as b:
        await a.store.commit([AppendUpdate("doc", _update("<seed>"))])
        await a.room("doc")
        room_b = await b.room("doc")
        peer = Peer(SilentTransport(), "doc", PeerLimits(), Metrics())
        room_b.add_peer(peer)
        late = HeldCommits(b.store, monkeypatch)
        room_b.doc.get("text", type=Text).insert(0, "<from-b>")
        assert await a.registry.delete("doc")
        if is_name_reused:  # someone starts a new document of that name meanwhile
            await a.store.commit([AppendUpdate("doc", _update("<new life>"))])
        late.released.set()
        await b.writer.flush()  # B's edit reaches the database only now
        if is_name_reused:
            stored = await a.store.load("doc")
            assert len(stored.updates) == 1, "B's edit landed in the next document"
            assert _text(build_doc(stored, "doc")) == "<new life>"
        else:
            assert await a.store.document_info("doc") is None, "the document came back"
        assert peer.close_code == CloseCode.DOCUMENT_DELETED
        assert "doc" not in b.registry.rooms


async def test_a_compaction_on_another_process_after_a_deletion_keeps_it_deleted(database_url):
    async with _process(database_url) as a, _process(database_url) as b:
        await a.store.commit([AppendUpdate("doc", _update("<seed>"))])
        await a.room("doc")
        room_b = await b.room("doc")
        peer = Peer(SilentTransport(), "doc", PeerLimits(), Metrics())
        room_b.add_peer(peer)
        room_b.doc.get("text", type=Text).insert(0, "<from-b>")
        await b.writer.flush()
        assert await a.registry.delete("doc")
        # B has not heard of it yet, and compacts what it holds.
        with pytest.raises(DocumentNotFound):
            await b.registry.compactor.snapshot(room_b)
        assert await a.store.document_info("doc") is None
        assert peer.close_code == CloseCode.DOCUMENT_DELETED
        assert "doc" not in b.registry.rooms


async def test_an_edit_or_snapshot_of_a_deleted_incarnation_is_declined(database_url):
    async with _process(database_url) as process:
        store = process.store
        await store.commit([AppendUpdate("doc", _update("old"), incarnation=0)])
        assert (await store.load("doc")).incarnation == 0
        await store.commit([DeleteDocument("doc")])
        assert (await store.load("doc")).incarnation == 1, "the next document's"
        [stale_edit, stale_snapshot] = await store.commit(
            [
                AppendUpdate("doc", _update("late"), incarnation=0),
                SaveSnapshot("doc", _update("late"), incarnation=0),
            ]
        )
        assert isinstance(stale_edit, DocumentDeleted)
        assert isinstance(stale_snapshot, DocumentDeleted)
        assert await store.document_info("doc") is None, "nothing was created"
        [row_id] = await store.commit([AppendUpdate("doc", _update("new"), incarnation=1)])
        assert isinstance(row_id, int)
        [stale_edit] = await store.commit([AppendUpdate("doc", _update("late"), incarnation=0)])
        assert isinstance(stale_edit, DocumentDeleted)
        assert _text(build_doc(await store.load("doc"), "doc")) == "new"


async def test_catching_up_a_closed_room_leaves_the_rows_it_lacks_to_a_later_snapshot(
    database_url,
):
    """A closed room applies nothing from storage: were it to claim the rows it
    was shown, a snapshot of it would delete what it never held."""
    async with _process(database_url) as a, _process(database_url) as b:
        await a.store.commit([AppendUpdate("doc", _update("<seed>"))])
        room_a = await a.room("doc")
        await b.store.commit([AppendUpdate("doc", _update("<theirs>"))])
        loaded = await a.registry.compactor._loader.load("doc")
        room_a.close(CloseCode.NORMAL, "unloaded")
        catch_up(room_a, loaded)
        capture = room_a.ledger.capture(room_a.doc.get_update())
        await a.store.commit(
            [SaveSnapshot("doc", capture.state, row_ids=capture.row_ids, base_seq=0)]
        )
        assert "<theirs>" in _text(build_doc(await a.store.load("doc"), "doc"))
