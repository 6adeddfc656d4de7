"""Retention thinning and the automatic-version window, with a fake clock."""

from __future__ import annotations

import asyncio

from pycrdt import Doc, Text

from collab.history.retention import RetentionPolicy, select_for_deletion
from collab.history.versions import VersionHistory
from collab.rooms.registry import LifecyclePolicy, RoomRegistry
from collab.storage.sql_store import SqlStore
from collab.storage.store import AppendUpdate, SaveSnapshot, SnapshotInfo, SnapshotKind
from collab.storage.writer import UpdateWriter

HOUR, DAY = 3600.0, 86400.0


class FakeClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _info(id_: int, created_at: float, kind: SnapshotKind = SnapshotKind.AUTO) -> SnapshotInfo:
    return SnapshotInfo(id_, "doc", created_at, created_at, kind, None, None, 10, "")


def test_policy_keeps_recent_then_hourly_then_daily():
    now = 100 * DAY
    versions = [
        _info(1, now - 5 * DAY - 10),  # day -5: newest of that day kept...
        _info(2, now - 5 * DAY - 5),
        _info(3, now - 3 * HOUR - 30),  # ...same hour as 4: only the newer kept
        _info(4, now - 3 * HOUR - 20),
        _info(5, now - 2 * HOUR, SnapshotKind.NAMED),  # named: always kept
        _info(6, now - 30 * 60),  # within the last hour: kept
        _info(7, now - 20 * 60),
        _info(8, now - 10 * DAY, SnapshotKind.PRE_RESTORE),
    ]
    assert select_for_deletion(versions, now, RetentionPolicy()) == [1, 3]
    limited = RetentionPolicy(daily_s=4 * DAY)
    assert select_for_deletion(versions, now, limited) == [1, 2, 3]


def test_policy_never_selects_the_newest_version():
    now = 100 * DAY
    old_only = [_info(1, now - 50 * DAY), _info(2, now - 40 * DAY)]
    assert select_for_deletion(old_only, now, RetentionPolicy(daily_s=DAY)) == [1]


async def _state(text: str) -> bytes:
    doc: Doc = Doc()
    doc.get("text", type=Text).insert(0, text)
    return doc.get_update()


async def test_thinning_runs_through_the_writer_with_a_fake_clock(tmp_path):
    clock = FakeClock(10 * DAY)
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'db'}", clock=clock)
    await store.open()
    writer = UpdateWriter(store)
    runner = asyncio.create_task(writer.run())
    registry = RoomRegistry(store, writer, LifecyclePolicy())
    history = VersionHistory(store, registry, writer, RetentionPolicy(), clock=clock)
    ids = []
    await store.commit([AppendUpdate("doc", await _state(""))])  # only an edit creates it
    for hours_ago in (30, 29.5, 5.2, 5.1, 0.5):
        clock.now = 10 * DAY - hours_ago * HOUR
        [snapshot_id] = await store.commit([SaveSnapshot("doc", await _state(f"{hours_ago}"))])
        ids.append(snapshot_id)
    named = (await store.commit([SaveSnapshot("doc", b"\x00\x00", kind=SnapshotKind.NAMED)]))[0]
    clock.now = 10 * DAY
    assert await history.thin_versions() == 2
    remaining = [v.id for v in await store.list_snapshots("doc")]
    # 30h and 29.5h ago share a day bucket: the newer stays; 5.2h and 5.1h share an hour
    assert remaining == [named, ids[4], ids[3], ids[1]]
    await writer.close(runner, 5)
    await store.close()


async def test_automatic_versions_merge_within_their_window(tmp_path):
    clock = FakeClock(1000.0)
    store = SqlStore(f"sqlite+aiosqlite:///{tmp_path / 'db'}", clock=clock)
    await store.open()
    window = 300.0
    await store.commit([AppendUpdate("doc", await _state(""))])  # only an edit creates it
    [first] = await store.commit([SaveSnapshot("doc", await _state("a"), merge_window_s=window)])
    clock.now += 200
    await store.commit([AppendUpdate("doc", await _state("b"))])
    [merged] = await store.commit([SaveSnapshot("doc", await _state("ab"), merge_window_s=window)])
    assert merged == first
    clock.now += 200  # 400 s after the version was opened: a new one
    [second] = await store.commit([SaveSnapshot("doc", await _state("abc"), merge_window_s=window)])
    assert second != first
    versions = await store.list_snapshots("doc")
    assert [(v.id, v.created_at, v.updated_at) for v in versions] == [
        (second, 1400.0, 1400.0),
        (first, 1000.0, 1200.0),
    ]
    stored = await store.load("doc")
    assert stored.updates == [], "the merged version covered the log entry"
    await store.close()
