"""When the database fails, nothing is relayed, nothing is lost, nothing unloads."""

from __future__ import annotations

import asyncio

import pytest
from pycrdt import Text
from sqlalchemy.exc import OperationalError

from collab.metrics import Metrics
from collab.rooms.registry import build_doc
from collab.storage.sql_store import SqlStore
from collab.storage.store import AppendUpdate, WriteContention
from collab.storage.writer import CONTENTION_RETRIES, UpdateWriter
from tests.support.waiting import TIMEOUT_S, eventually


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


class _Deadlock(Exception):
    """What a PostgreSQL driver raises when the server aborts a deadlocked transaction."""

    sqlstate = "40P01"


def _collide(store: SqlStore, monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """The next `times` transactions of `store` collide with another process's."""
    real_commit = store._commit
    attempts = [0]

    async def colliding_commit(ops):
        attempts[0] += 1
        if attempts[0] <= times:
            raise OperationalError("INSERT INTO updates ...", {}, _Deadlock("deadlock detected"))
        return await real_commit(ops)

    monkeypatch.setattr(store, "_commit", colliding_commit)
    return attempts


async def test_only_the_writer_retries_contention_at_once_then_as_an_outage(settings, monkeypatch):
    store = SqlStore(settings.database_url)
    await store.open()
    try:
        attempts = _collide(store, monkeypatch, times=1)
        # The store makes one attempt and says why it failed; it never retries.
        with pytest.raises(WriteContention):
            await store.commit([AppendUpdate("doc", b"\x00\x00")])
        assert attempts[0] == 1

        # The writer runs a colliding batch again at once (a backoff would outlast
        # the test), without calling it an outage...
        attempts = _collide(store, monkeypatch, times=CONTENTION_RETRIES)
        metrics = Metrics()
        writer = UpdateWriter(store, metrics=metrics, retry_initial_s=TIMEOUT_S * 10)
        runner = asyncio.create_task(writer.run())
        row_id = await asyncio.wait_for(writer.submit(AppendUpdate("doc", b"\x00\x00")), TIMEOUT_S)
        assert isinstance(row_id, int) and attempts[0] == CONTENTION_RETRIES + 1
        assert not writer.is_failing
        assert metrics.registry.get_sample_value("collab_commit_failures_total") == 0
        await writer.close(runner, TIMEOUT_S)

        # ...until contention persists: then it is an outage (backoff, failing).
        attempts = _collide(store, monkeypatch, times=CONTENTION_RETRIES + 1)
        writer = UpdateWriter(store, metrics=metrics, retry_initial_s=0.01)
        runner = asyncio.create_task(writer.run())
        failing = asyncio.create_task(writer.wait_until_failing())
        row_id = await asyncio.wait_for(writer.submit(AppendUpdate("doc", b"\x00\x00")), TIMEOUT_S)
        assert isinstance(row_id, int) and attempts[0] == CONTENTION_RETRIES + 2
        assert failing.done() and not writer.is_failing, "failed, then recovered"
        assert metrics.registry.get_sample_value("collab_commit_failures_total") == 1
        await writer.close(runner, TIMEOUT_S)
    finally:
        await store.close()
