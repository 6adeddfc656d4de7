"""Storage: group commit, compaction, loading from snapshot + log, big documents,
and a deletion racing the snapshots that wait for a room's writes."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from pycrdt import Doc, Text

from collab.errors import CloseCode
from collab.rooms.ledger import CompactionLedger, SnapshotCapture
from collab.rooms.registry import build_doc
from collab.storage.sql_store import SqlStore
from collab.storage.store import AppendUpdate, DocumentDeleted, SaveSnapshot, WriteOp
from collab.storage.writer import UpdateWriter
from tests.support.server import RunningServer, run_server
from tests.support.waiting import TIMEOUT_S, eventually
from tests.support.yclient import YClient


def _edits(count: int) -> tuple[list[bytes], str]:
    """`count` incremental updates of one text, as a real editor would send them."""
    doc: Doc = Doc()
    text = doc.get("text", type=Text)
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    for i in range(count):
        text.insert(len(text) if i % 3 else 0, f"{i},")
    return updates, str(text)


async def test_compaction_shrinks_the_log_and_keeps_the_content(settings):
    async with run_server(settings.replace(compact_after_updates=50)) as server:
        client = await YClient(server.ws_url("doc")).connect()
        for i in range(400):
            client.text.insert(len(client.text), f"{i} ")
            if i % 2:
                # What arrives in one tick is one log row: make rows, not one big one.
                await eventually(client.is_saved)
        expected = "".join(f"{i} " for i in range(400))
        await eventually(client.is_saved)
        store = server.runtime.store
        info = await eventually(lambda: _compacted(store))
        assert info.log_entries < 50 and info.snapshots >= 1
        assert build_doc(await store.load("doc"), "doc").get("text", type=Text).to_py() == expected
        await client.close()
    async with run_server(settings) as server:
        reader = await YClient(server.ws_url("doc")).connect()
        assert str(reader.text) == expected
        await reader.close()


async def _compacted(store: SqlStore):
    info = await store.document_info("doc")
    return info if info and info.snapshots and info.log_entries < 50 else None


async def test_document_loads_from_thousands_of_log_entries(settings):
    updates, expected = _edits(5000)
    store = SqlStore(settings.database_url)
    await store.open()
    writer = UpdateWriter(store, max_batch_ops=700)
    runner = asyncio.create_task(writer.run())
    futures = [writer.submit(AppendUpdate("long", update)) for update in updates]
    await asyncio.gather(*futures)
    assert writer.commits >= 5000 // 700
    await writer.close(runner, 10)
    assert (await store.document_info("long")).log_entries == 5000
    await store.close()

    async with run_server(settings) as server:
        client = await YClient(server.ws_url("long")).connect()
        assert str(client.text) == expected
        await client.close()


async def test_a_snapshot_commits_apart_from_the_appends_around_it(settings):
    """A snapshot holds the writer for milliseconds: the appends queued before it
    commit without waiting for it, those behind it in the next transaction, and
    snapshots queued together still share one."""
    updates, expected = _edits(4)
    store = SqlStore(settings.database_url)
    await store.open()
    transactions: list[list[str]] = []
    real_commit = store.commit

    async def recording_commit(ops):
        transactions.append([type(op).__name__ for op in ops])
        return await real_commit(ops)

    store.commit = recording_commit  # type: ignore[method-assign]
    await store.commit([AppendUpdate("a", updates[0]), AppendUpdate("b", updates[0])])
    transactions.clear()
    writer = UpdateWriter(store)
    head: Doc = Doc()
    head.apply_update(updates[0])
    futures = [
        writer.submit(AppendUpdate("a", updates[1])),
        writer.submit(AppendUpdate("b", updates[1])),
        writer.submit(SaveSnapshot("a", head.get_update(), row_ids=())),
        writer.submit(SaveSnapshot("b", head.get_update(), row_ids=())),
        writer.submit(None),
        writer.submit(AppendUpdate("a", updates[2])),
        writer.submit(AppendUpdate("a", updates[3])),
    ]
    runner = asyncio.create_task(writer.run())
    results = await asyncio.gather(*futures)
    assert transactions == [
        ["AppendUpdate", "AppendUpdate"],
        ["SaveSnapshot", "SaveSnapshot"],
        ["AppendUpdate", "AppendUpdate"],
    ]
    assert all(isinstance(result, int) for i, result in enumerate(results) if i != 4)
    await writer.close(runner, 10)
    assert build_doc(await store.load("a"), "a").get("text", type=Text).to_py() == expected
    await store.close()


async def test_rooms_due_together_are_compacted_one_transaction_each(settings):
    """Rooms that fall due in the same sweep (they started together) do not put
    all their snapshots in one transaction, which every room's edits would wait
    behind."""
    async with run_server(settings.replace(compact_after_updates=20)) as server:
        store = server.runtime.store
        snapshots_per_transaction: list[int] = []
        real_commit = store.commit

        async def recording_commit(ops):
            snapshots_per_transaction.append(sum(type(op) is SaveSnapshot for op in ops))
            return await real_commit(ops)

        store.commit = recording_commit  # type: ignore[method-assign]
        clients = [await YClient(server.ws_url(f"room{i}")).connect() for i in range(6)]
        for n in range(25):
            for client in clients:
                client.text.insert(len(client.text), f"{n},")
            await asyncio.gather(*(eventually(client.is_saved) for client in clients))
        for i in range(6):
            await eventually(lambda i=i: _has_snapshot(store, f"room{i}"))
        assert sum(snapshots_per_transaction) >= 6
        assert max(snapshots_per_transaction) == 1
        for client in clients:
            await client.close()


async def _has_snapshot(store: SqlStore, name: str) -> bool:
    info = await store.document_info(name)
    return info is not None and info.snapshots > 0


async def test_snapshot_then_log_loads_in_order(settings):
    updates, expected = _edits(300)
    store = SqlStore(settings.database_url)
    await store.open()
    head: Doc = Doc()
    for update in updates[:200]:
        head.apply_update(update)
    await store.commit([AppendUpdate("doc", u) for u in updates[:200]])
    await store.commit([SaveSnapshot("doc", head.get_update())])
    await store.commit([AppendUpdate("doc", u) for u in updates[200:]])
    stored = await store.load("doc")
    assert stored.snapshot is not None and len(stored.updates) == 100
    assert build_doc(stored, "doc").get("text", type=Text).to_py() == expected
    await store.close()


async def test_large_document_syncs_to_a_new_client(connect, server):
    writer = await connect("big")
    # 48 pastes of 128 KiB. (Thousands of appends of 1 KiB by one client would make
    # yrs re-copy its ever-growing merged block each time: quadratic, and not how
    # people type.)
    paste = ("".join(chr(ord("a") + (i * 7) % 26) for i in range(1023)) + "\n") * 128
    for _ in range(48):
        writer.text.insert(len(writer.text), paste)
    size = len(str(writer.text))
    assert size >= 6 * 1024 * 1024
    await eventually(writer.is_saved)
    reader = await connect("big")
    assert len(str(reader.text)) == size
    assert str(reader.text) == str(writer.text)


async def test_a_snapshot_never_creates_a_document(settings):
    store = SqlStore(settings.database_url)
    await store.open()
    try:
        [declined] = await store.commit([SaveSnapshot("ghost", b"\x00\x00")])
        assert isinstance(declined, DocumentDeleted)
        assert await store.document_info("ghost") is None
    finally:
        await store.close()


class SlowDatabase:
    """Holds every commit of the server's store while closed: writes stay pending."""

    def __init__(self, server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
        self.is_open = asyncio.Event()
        self.is_open.set()
        store = server.runtime.store
        real_commit = store.commit

        async def commit(ops: list[WriteOp]) -> list[object]:
            await self.is_open.wait()
            return await real_commit(ops)

        monkeypatch.setattr(store, "commit", commit)


def _notice_settling(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Set once a snapshot starts waiting for the room's pending writes."""
    settling = asyncio.Event()
    real_settle = CompactionLedger.settle

    async def settle(self: CompactionLedger, capture: SnapshotCapture) -> SnapshotCapture:
        settling.set()
        return await real_settle(self, capture)

    monkeypatch.setattr(CompactionLedger, "settle", settle)
    return settling


@pytest.mark.parametrize(
    "racer", ["named save", "named save after a version", "janitor's compaction"]
)
async def test_a_snapshot_waiting_for_writes_cannot_bring_a_deleted_document_back(
    settings, monkeypatch, racer
):
    """A snapshot waits for the room's pending writes; the document is deleted
    meanwhile. Nothing of it may be written after the deletion: not the document
    (with the content it had), not an empty row left by a declined snapshot."""
    is_compaction = racer == "janitor's compaction"
    tuned = settings.replace(compact_after_updates=1 if is_compaction else 1000)
    async with run_server(tuned) as server, httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        store, writer = server.runtime.store, server.runtime.writer
        api = f"{server.http_url}/api/documents/doc"
        client = await YClient(server.ws_url("doc")).connect()
        database = SlowDatabase(server, monkeypatch)
        settling = _notice_settling(monkeypatch)
        if not is_compaction:
            client.text.insert(0, "secret")
            await eventually(client.is_saved)
            if racer == "named save after a version":
                assert (await http.post(f"{api}/snapshots", json={"label": "v1"})).is_success
        database.is_open.clear()
        client.text.insert(0, "more ")  # its write waits for the database
        await eventually(lambda: writer.pending_for("doc") == 1, what="the edit pending")
        saving = None
        if not is_compaction:
            saving = asyncio.create_task(http.post(f"{api}/snapshots", json={"label": "late"}))
        await asyncio.wait_for(settling.wait(), TIMEOUT_S)  # the snapshot waits for the edit
        deleting = asyncio.create_task(http.delete(api))
        assert await client.wait_closed() == CloseCode.DOCUMENT_DELETED
        await eventually(lambda: writer.pending_for("doc") == 2, what="the deletion queued")
        database.is_open.set()
        assert (await deleting).status_code == 204
        if saving is not None:
            assert (await saving).status_code == 404  # the document is gone
        await eventually(lambda: not writer.pending_ops and not server.runtime.registry.rooms)
        await writer.flush()
        assert await store.document_info("doc") is None, "the document came back"
        assert (await store.load("doc")).is_empty
        assert await store.list_snapshots("doc") == []
        fresh = await YClient(server.ws_url("doc")).connect()
        assert str(fresh.text) == ""
        await fresh.close()
