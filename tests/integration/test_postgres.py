"""The same server on PostgreSQL, by URL only (no code change)."""

from __future__ import annotations

import pytest

from collab.storage.store import SnapshotKind
from tests.support.server import run_server
from tests.support.waiting import eventually
from tests.support.yclient import YClient

pytestmark = pytest.mark.postgres


async def test_edits_persist_and_compact_on_postgresql(settings, postgres_url):
    pg_settings = settings.replace(database_url=postgres_url, compact_after_updates=40)
    async with run_server(pg_settings) as server:
        a = await YClient(server.ws_url("pg-doc")).connect()
        b = await YClient(server.ws_url("pg-doc")).connect()
        for i in range(100):
            (a if i % 2 else b).text.insert(0, f"{i};")
            if i % 2:
                # What arrives in one tick is one log row: make rows, not one big one.
                await eventually(lambda: a.is_saved() and b.is_saved())
        await eventually(lambda: str(a.text) == str(b.text) and len(str(a.text)) > 200)
        expected = str(a.text)
        store = server.runtime.store

        async def compacted() -> bool:
            info = await store.document_info("pg-doc")
            return bool(info and info.snapshots and info.log_entries < 40)

        await eventually(compacted)
        await a.close()
        await b.close()
    async with run_server(pg_settings) as server:
        reader = await YClient(server.ws_url("pg-doc")).connect()
        assert str(reader.text) == expected
        await reader.close()


async def test_nul_characters_are_stored_on_postgresql(settings, postgres_url):
    """PostgreSQL text cannot hold NUL: the preview, label and author must not fail."""
    async with run_server(settings.replace(database_url=postgres_url)) as server:
        client = await YClient(server.ws_url("nul")).connect()
        client.text.insert(0, "a\x00b")
        await eventually(lambda: client.received_updates == 1)
        room = server.runtime.registry.rooms["nul"]
        snapshot_id = await server.runtime.registry.compactor.snapshot(
            room, SnapshotKind.NAMED, label="l\x00", author="\x00"
        )
        other = await YClient(server.ws_url("other")).connect()
        other.text.insert(0, "unblocked")
        await eventually(lambda: other.received_updates == 1)
        [version] = await server.runtime.store.list_snapshots("nul")
        assert version.id == snapshot_id and version.preview == "a\ufffdb"
        await client.close()
        await other.close()
