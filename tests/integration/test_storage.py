"""Storage: group commit, compaction, loading from snapshot + log, big documents."""

from __future__ import annotations

import asyncio

from pycrdt import Doc, Text

from collab.rooms.registry import build_doc
from collab.storage.sql_store import SqlStore
from collab.storage.store import AppendUpdate, SaveSnapshot
from collab.storage.writer import UpdateWriter
from tests.support.server import run_server
from tests.support.waiting import eventually
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
