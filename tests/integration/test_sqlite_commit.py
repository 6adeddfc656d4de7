"""SQLite's write path: small append batches commit on the loop, the rest on the
commit thread, and the loop never waits for a lock or a checkpoint."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from sqlalchemy.engine import make_url

from collab.metrics import Metrics
from collab.storage.sql_store import SqlStore
from collab.storage.store import AppendUpdate, SaveSnapshot
from tests.support.server import metric_value

_UPDATE = b"\x01\x01\xb0\x96\x80\x01\x00\x04\x01\x01t\x01a\x00"


def _path(store_url: str) -> Path:
    database = make_url(store_url).database
    assert database
    return Path(database)


async def _open(url: str) -> tuple[SqlStore, Metrics]:
    metrics = Metrics()
    store = SqlStore(url, metrics=metrics)
    await store.open()
    assert store.sqlite_writes is not None
    return store, metrics


def _commits(metrics: Metrics) -> tuple[float, float]:
    """(inline, on the commit thread), from the Prometheus counter."""
    name = "collab_sqlite_commits_total"
    return metric_value(metrics, name, path="inline"), metric_value(metrics, name, path="thread")


async def test_small_appends_commit_inline_and_snapshots_on_the_thread(settings):
    store, writes = await _open(settings.database_url)
    try:
        (row_id,) = await store.commit([AppendUpdate("doc", _UPDATE)])
        assert _commits(writes) == (1, 0)
        await store.commit([SaveSnapshot("doc", _UPDATE, row_ids=frozenset({row_id}))])
        assert _commits(writes) == (1, 1)
        big = AppendUpdate("doc", b"\x00" * (1024 * 1024))
        await store.commit([big])  # too big to hold the loop for
        assert _commits(writes) == (1, 2)
        info = await store.document_info("doc")
        assert info is not None and info.snapshots == 1 and info.log_entries == 1
    finally:
        await store.close()


async def test_a_held_write_lock_moves_the_batch_to_the_thread(settings):
    store, writes = await _open(settings.database_url)
    await store.commit([AppendUpdate("doc", _UPDATE)])  # the document row exists
    other = sqlite3.connect(_path(settings.database_url), isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
        commit = asyncio.create_task(store.commit([AppendUpdate("doc", _UPDATE)]))
        await asyncio.sleep(0.3)  # the loop runs on: the inline attempt did not wait
        assert not commit.done()
        other.execute("COMMIT")
        await asyncio.wait_for(commit, 10)
        assert _commits(writes) == (1, 1)
        info = await store.document_info("doc")
        assert info is not None and info.log_entries == 2
    finally:
        other.close()
        await store.close()


async def test_inline_commits_are_checkpointed_off_the_loop(settings):
    store, writes = await _open(settings.database_url)
    wal = _path(settings.database_url).with_name(_path(settings.database_url).name + "-wal")
    try:
        for _ in range(5000):
            await store.commit([AppendUpdate("doc", _UPDATE)])
        # Every 257th batch went to the thread, which checkpointed after it: without
        # that the WAL would hold every commit's pages (~64 MB here, ~3 MB with).
        assert _commits(writes)[1] == 5000 // 257
        assert wal.stat().st_size < 8 * 1024 * 1024
    finally:
        await store.close()
    info_store, _ = await _open(settings.database_url)
    try:
        info = await info_store.document_info("doc")
        assert info is not None and info.log_entries == 5000
    finally:
        await info_store.close()
