"""The outbox on SQLite and PostgreSQL: events written by the change's own
transaction, debounced updates, publishing once, claims won by one process."""

from __future__ import annotations

import asyncio
import time

import pytest
from pycrdt import merge_updates
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import create_async_engine

from collab.storage.deliveries import DeliveryQueue
from collab.storage.outbox import EventOutbox
from collab.storage.sql_schema import documents
from collab.storage.sql_store import SqlStore
from collab.storage.store import AppendUpdate, DeleteDocument, SaveSnapshot, SnapshotKind
from tests.support.yclient import text_edits

pytestmark = pytest.mark.postgres


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path, postgres_url) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'collab.db'}"
    return postgres_url


@pytest.fixture
async def store(database_url):
    store = SqlStore(database_url)
    await store.open()
    yield store
    await store.close()


async def publish_all(outbox: EventOutbox) -> int:
    return await outbox.publish(debounce_s=0.0, max_delay_s=60.0)


async def test_appends_make_one_pending_change_told_as_one_updated_event(store):
    outbox = EventOutbox(store.engine, time.time)
    edits = text_edits("a", "b", "c", "d")
    await store.commit([AppendUpdate("doc", edits[0], author="ann")])
    rows = await store.commit([AppendUpdate("doc", e) for e in edits[1:]])
    # Not quiet yet: only the creation is published.
    assert await outbox.publish(debounce_s=3600.0, max_delay_s=3600.0) == 1
    assert await publish_all(outbox) == 1
    created, updated = await outbox.read(after=0, limit=10)
    assert (created.seq, created.type, updated.seq, updated.type) == (
        1,
        "document.created",
        2,
        "document.updated",
    )
    first_row = rows[0]
    assert isinstance(first_row, int)
    assert updated.data == {"author": "ann", "from_seq": first_row - 1, "seq": rows[-1]}
    assert await publish_all(outbox) == 0
    assert not await outbox.has_work(debounce_s=0.0, max_delay_s=60.0)


async def test_a_document_tells_its_pending_edits_before_its_next_event(store):
    outbox = EventOutbox(store.engine, time.time)
    state = text_edits("a")[0]
    await store.commit([AppendUpdate("doc", state)])
    await store.commit(
        [SaveSnapshot("doc", state, kind=SnapshotKind.NAMED, label="v", author="bo")]
    )
    results = await store.commit([AppendUpdate("doc", text_edits("b")[0]), DeleteDocument("doc")])
    assert await outbox.publish(debounce_s=3600.0, max_delay_s=3600.0) == 5
    events = await outbox.read(after=0, limit=10)
    assert [e.type for e in events] == [
        "document.created",
        "document.updated",
        "version.saved",
        "document.updated",
        "document.deleted",
    ]
    assert events[2].data["label"] == "v" and events[2].data["author"] == "bo"
    assert events[3].data["seq"] == results[0]  # read before the deletion took the log


async def test_an_updated_event_names_the_newest_row_even_once_compacted(store):
    outbox = EventOutbox(store.engine, time.time)
    edits = text_edits("a", "b", "c")
    rows = [(await store.commit([AppendUpdate("doc", edit)]))[0] for edit in edits]
    state = merge_updates(*edits)
    await store.commit([SaveSnapshot("doc", state, row_ids=tuple(rows))])  # type: ignore[arg-type]
    assert (await store.load("doc")).updates == []
    await publish_all(outbox)
    updated = (await outbox.read(after=0, limit=10))[-1]
    assert updated.type == "document.updated"
    assert (updated.data["from_seq"], updated.data["seq"]) == (rows[0], rows[-1])


async def test_many_documents_gone_quiet_at_once_are_told_in_one_pass_in_order(store):
    outbox = EventOutbox(store.engine, time.time)
    queue = DeliveryQueue(store.engine, time.time)
    await queue.subscribe("http://127.0.0.1:9/a", "secret-secret-secret")
    await queue.subscribe("http://127.0.0.1:9/b", "secret-secret-secret")
    names = [f"doc-{i:03d}" for i in range(120)]
    rows = {}
    for name in names:
        (rows[name],) = await store.commit([AppendUpdate(name, text_edits(name)[0], author=name)])
    assert await publish_all(outbox) == 240  # created + updated of each, one pass
    events = await outbox.read(after=0, limit=1000)
    assert [e.seq for e in events] == list(range(1, 241))
    assert await outbox.last_seq() == 240
    created = [e for e in events if e.type == "document.created"]
    updated = [e for e in events if e.type == "document.updated"]
    assert [e.document for e in created] == names == [e.document for e in updated]
    assert max(e.seq for e in created) < min(e.seq for e in updated)
    for event in updated:
        assert event.data == {
            "author": event.document,
            "from_seq": rows[event.document],
            "seq": rows[event.document],
        }
    assert not await outbox.has_work(debounce_s=0.0, max_delay_s=60.0)
    # One delivery per subscription and event: each queue's head (one per document).
    due = await queue.due(1000)
    assert len(due) == 2 * len(names)
    assert {d.event.type for d in due} == {"document.created"}


async def test_a_publish_tells_at_most_its_batch_and_the_next_passes_the_rest_in_order(store):
    """A pass's Python work runs on the event loop: many documents gone quiet at
    once are told a batch a pass, with `has_work` true until all are, in the
    order one pass would have told them."""
    outbox = EventOutbox(store.engine, time.time, batch=50)
    names = [f"doc-{i:03d}" for i in range(120)]
    for name in names:
        await store.commit([AppendUpdate(name, text_edits(name)[0])])
    counts = []
    while await outbox.has_work(debounce_s=0.0, max_delay_s=60.0):
        counts.append(await publish_all(outbox))
    assert counts == [50, 50, 50, 50, 40]
    events = await outbox.read(after=0, limit=1000)
    assert [e.seq for e in events] == list(range(1, 241))
    assert [(e.type, e.document) for e in events] == [
        ("document.created", name) for name in names
    ] + [("document.updated", name) for name in names]


async def test_a_documents_updated_at_follows_its_edits_at_most_once_a_second(database_url):
    """The refresh that tells the publisher a document is still being edited
    (and the documents list when it was last edited): written by the append's
    own transaction, skipped within a second of the last one."""
    clock = [1000.0]
    store = SqlStore(database_url, clock=lambda: clock[0])
    await store.open()
    try:
        edits = text_edits("a", "b", "c", "d")

        async def edit_at(at: float, edit: bytes) -> float:
            clock[0] = at
            await store.commit([AppendUpdate("doc", edit)])
            async with store.engine.connect() as conn:
                return float(await conn.scalar(select(documents.c.updated_at)))

        assert await edit_at(1000.0, edits[0]) == 1000.0  # created
        assert await edit_at(1000.5, edits[1]) == 1000.0  # fresh: not written again
        assert await edit_at(1001.5, edits[2]) == 1001.5
        assert await edit_at(1100.0, edits[3]) == 1100.0
    finally:
        await store.close()


async def test_the_database_decides_when_editing_went_quiet_as_publish_does(store):
    """`has_work` asks the database one question (the quiet test is SQL, not a read
    of every pending change); it and `publish` agree at each moment: quiet once
    the newer of the change's last edit and the document's `updated_at` is
    `debounce_s` old, or once the change has waited `max_delay_s`."""
    clock = [0.0]
    outbox = EventOutbox(store.engine, lambda: clock[0])
    await store.commit([AppendUpdate("doc", text_edits("a")[0])])
    started = time.time()
    clock[0] = started
    assert await outbox.publish(debounce_s=3600.0, max_delay_s=3600.0) == 1  # created

    async def told(at: float, *, debounce_s: float = 2.0, max_delay_s: float = 30.0) -> bool:
        clock[0] = started + at
        return await outbox.has_work(debounce_s=debounce_s, max_delay_s=max_delay_s)

    assert not await told(1.0)
    assert await told(3.0)
    # Edited on since (the store refreshes `updated_at` while the pending row stays).
    async with store.engine.begin() as conn:
        await conn.execute(update(documents).values(updated_at=started + 10.0))
    assert not await told(11.0)
    assert await told(11.0, max_delay_s=5.0)  # waited long enough anyway
    assert await outbox.publish(debounce_s=2.0, max_delay_s=30.0) == 0  # at 11.0
    assert await told(12.5)
    assert await outbox.publish(debounce_s=2.0, max_delay_s=30.0) == 1
    (updated,) = await outbox.read(after=1, limit=10)
    assert (updated.type, updated.occurred_at) == ("document.updated", started + 10.0)
    assert not await told(100.0, debounce_s=0.0, max_delay_s=0.0)


async def test_an_event_is_claimed_by_one_process_until_its_claim_lapses(store, database_url):
    other_engine = create_async_engine(database_url)
    try:
        mine = DeliveryQueue(store.engine, time.time)
        theirs = DeliveryQueue(other_engine, time.time)
        await mine.subscribe("http://127.0.0.1:9/hooks", "secret-secret-secret")
        await store.commit([AppendUpdate("doc", text_edits("a")[0])])
        await publish_all(EventOutbox(store.engine, time.time))
        (due,) = await mine.due(10)
        claims = await asyncio.gather(
            mine.claim(due, "process-a", 60.0), theirs.claim(due, "process-b", 60.0)
        )
        assert sorted(claims) == [False, True]
        assert await mine.due(10) == []  # claimed, and the update waits behind it
        await mine.failed(due, "process-a" if claims[0] else "process-b", error="x", retry_at=0.0)
        (again,) = await theirs.due(10)
        assert again.event.seq == due.event.seq and again.attempts == 1
        assert await theirs.claim(again, "process-b", -1.0)  # a claim that has lapsed
        assert await mine.claim(again, "process-a", 60.0)
    finally:
        await other_engine.dispose()


async def test_publishers_of_two_processes_number_each_event_once(store, database_url):
    other_engine = create_async_engine(database_url)
    try:
        queue = DeliveryQueue(store.engine, time.time)
        await queue.subscribe("http://127.0.0.1:9/a", "secret-secret-secret")
        await queue.subscribe("http://127.0.0.1:9/b", "secret-secret-secret")
        for name in ("a", "b", "c", "d"):
            await store.commit([AppendUpdate(name, text_edits(name)[0])])
        outboxes = [EventOutbox(store.engine, time.time), EventOutbox(other_engine, time.time)]
        counts = await asyncio.gather(*(publish_all(o) for o in outboxes))
        assert sum(counts) == 8
        events = await outboxes[0].read(after=0, limit=100)
        assert [e.seq for e in events] == list(range(1, 9))
        assert await outboxes[0].last_seq() == 8
        assert len(await queue.due(100)) == 8  # the head of each of 2 x 4 queues
    finally:
        await other_engine.dispose()


async def test_a_commit_that_records_an_event_signals_the_events_task_and_a_plain_append_not(
    store,
):
    edits = text_edits("a", "b")
    await store.commit([AppendUpdate("doc", edits[0])])  # document.created
    assert store.events_committed.is_set()
    store.events_committed.clear()
    await store.commit([AppendUpdate("doc", edits[1])])  # only the pending change
    assert not store.events_committed.is_set()
    state = merge_updates(*edits)
    await store.commit([SaveSnapshot("doc", state, kind=SnapshotKind.NAMED, label="v")])
    assert store.events_committed.is_set()  # the pending change's update and version.saved
    store.events_committed.clear()
    await store.commit([SaveSnapshot("doc", state, kind=SnapshotKind.AUTO)])
    assert not store.events_committed.is_set()
    await store.commit([DeleteDocument("doc", b"\x00")])
    assert store.events_committed.is_set()
