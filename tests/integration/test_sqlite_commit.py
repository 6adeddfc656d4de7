"""SQLite's write path: small append batches commit on the loop, the rest on the
commit thread, and the loop never waits for a lock or a checkpoint."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
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
    committer = store.sqlite_writes
    assert committer is not None
    committer._restart_wal_frames = 1000  # small, so a small test restarts it often
    wal = _path(settings.database_url).with_name(_path(settings.database_url).name + "-wal")
    checkpoints_beside = 0
    try:
        for _ in range(5000):
            await store.commit([AppendUpdate("doc", _UPDATE)])
            if committer._beside is not None:
                checkpoints_beside += 1
                await committer._beside  # let the one beside end before the next commits
        # A checkpoint ran beside the commits every 257th, and once the WAL held
        # 1,000 frames the batch after one went to the thread to finish it, so the
        # WAL started over: without that it would hold every commit's pages
        # (~64 MB here, ~5 MB with).
        assert checkpoints_beside == 5000 // 257
        assert 0 < _commits(writes)[1] < checkpoints_beside
        assert wal.stat().st_size < 8 * 1024 * 1024
    finally:
        await store.close()
    info_store, _ = await _open(settings.database_url)
    try:
        info = await info_store.document_info("doc")
        assert info is not None and info.log_entries == 5000
    finally:
        await info_store.close()


async def test_commits_go_on_inline_while_a_checkpoint_runs_beside(settings):
    """The writer never waits for the bulk of a checkpoint: while one is under way
    on its own thread (held there by a gate), batches still commit on the loop."""
    store, writes = await _open(settings.database_url)
    committer = store.sqlite_writes
    assert committer is not None
    committer._restart_wal_frames = 1  # the catch-up follows every checkpoint
    gate = threading.Event()
    committer._checkpoint_thread.submit(gate.wait, 30)  # the checkpoint waits behind it
    reader = sqlite3.connect(_path(settings.database_url), isolation_level=None)
    try:
        for _ in range(300):
            await store.commit([AppendUpdate("doc", _UPDATE)])
        beside = committer._beside
        assert beside is not None and not beside.done()
        assert _commits(writes) == (300, 0)
        for _ in range(50):
            await store.commit([AppendUpdate("doc", _UPDATE)])
        assert _commits(writes) == (350, 0)  # none waited for the checkpoint
        gate.set()
        await beside
        # The batch after it finishes it on the commit thread...
        await store.commit([AppendUpdate("doc", _UPDATE)])
        assert _commits(writes) == (350, 1)
        # ...so every frame is copied, and the next write starts the WAL over.
        ((busy, frames, copied),) = reader.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        assert busy == 0 and frames == copied
    finally:
        gate.set()
        reader.close()
        await store.close()
