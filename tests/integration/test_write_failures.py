"""When the database fails, nothing is relayed, nothing is lost, nothing unloads."""

from __future__ import annotations

import asyncio

from pycrdt import Text

from collab.rooms.registry import build_doc
from tests.support.waiting import eventually


class DatabaseOutage(Exception):
    pass


async def test_updates_wait_for_the_database_and_survive_an_outage(connect, server, monkeypatch):
    store = server.runtime.store
    real_commit = store.commit
    outage = {"failures": 0, "active": True}

    async def failing_commit(ops):
        if outage["active"]:
            outage["failures"] += 1
            raise DatabaseOutage("database unavailable")
        return await real_commit(ops)

    a = await connect("doc")
    b = await connect("doc")
    monkeypatch.setattr(store, "commit", failing_commit)
    a.text.insert(0, "during the outage")
    await eventually(lambda: outage["failures"] >= 3, what="writer retries")
    # Not durable, so not relayed: neither the other client nor the sender's echo.
    assert str(b.text) == "" and a.received_updates == 0
    # A new client's initial sync must not expose it either.
    late_sync = asyncio.create_task(connect("doc"))
    await asyncio.sleep(0.2)
    assert not late_sync.done()
    await b.close()
    await a.close()
    registry = server.runtime.registry
    await asyncio.sleep(server.settings.room_grace_s + 0.2)
    assert "doc" in registry.rooms, "a room with unsaved updates must stay in memory"

    outage["active"] = False
    late = await late_sync
    assert str(late.text) == "during the outage"
    stored = build_doc(await store.load("doc"), "doc")
    assert stored.get("text", type=Text).to_py() == "during the outage"
