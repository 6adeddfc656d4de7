"""The outbox's publisher and the change feed: events become numbered and visible.

A change's transaction leaves its events unnumbered (collab.storage.outbox_writes).
`EventOutbox.publish` numbers them, in a transaction of its own: it takes the
`event_counter` row (publishers of every process take turns on it, so `seq`
order is the order events were published and a feed reader's cursor never
skips one committed later), turns quiet pending changes into `document.updated`
events, gives each unnumbered event the next `seq`, and fans it out to one
`webhook_deliveries` row per subscription - all or nothing, so a crash in the
middle only leaves the work for the next pass.

Invariants: an event gets a `seq` once, and a delivery row per subscription in
the same transaction; a pending change is turned into an event only once (the
row is deleted by the transaction that turns it; PostgreSQL skips rows a change's
transaction holds, which is still writing to them). Whether a document's
editing went quiet is decided by the database (`outbox_writes.QUIET`), so a
pass reads only what it publishes, however many documents are being edited.
Never called on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import bindparam, delete, exists, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from collab.storage.events import Event, event_of
from collab.storage.outbox_writes import (
    HAS_QUIET,
    insert_updated_events,
    quiet_bounds,
    quiet_changes,
)
from collab.storage.sql_schema import (
    event_counter,
    events,
    pending_changes,
    webhook_deliveries,
    webhook_subscriptions,
)

_COUNTER_ID = 1
_HAS_WORK = select(or_(exists().where(events.c.seq.is_(None)), HAS_QUIET))
PENDING = "pending"
PARKED = "parked"


class EventOutbox:
    """Publishing, reading and pruning events on one database (SQLite or PostgreSQL)."""

    def __init__(
        self, engine: AsyncEngine, clock: Callable[[], float], *, batch: int = 500
    ) -> None:
        self._engine = engine
        self._clock = clock
        # The most events one `publish` numbers (and pending changes it turns):
        # a pass's Python work runs on the event loop, ~55 us an event, so a
        # thousand documents gone quiet at once are told in passes, one after
        # the other, instead of holding every room's edits for one long one.
        self._batch = batch

    async def has_work(self, *, debounce_s: float, max_delay_s: float) -> bool:
        """Whether `publish` has anything to do: one read of one row, so an idle
        server (or one whose documents are still being edited) opens no write
        transaction and reads no pending change."""
        bounds = quiet_bounds(self._clock(), debounce_s, max_delay_s)
        async with self._engine.connect() as conn:
            return bool(await conn.scalar(_HAS_WORK, bounds))

    async def publish(self, *, debounce_s: float, max_delay_s: float) -> int:
        """Number what is ready (see the module's docstring); how many events."""
        now = self._clock()
        async with self._engine.begin() as conn:
            return await conn.run_sync(_publish, now, debounce_s, max_delay_s, self._batch)

    async def read(self, *, after: int, limit: int) -> list[Event]:
        """Published events after the cursor `after`, oldest first."""
        query = (
            select(events.c.seq, events.c.type, events.c.document, events.c.occurred_at)
            .add_columns(events.c.data)
            .where(events.c.seq > after)
            .order_by(events.c.seq)
            .limit(limit)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [event_of(*row) for row in rows]

    async def last_seq(self) -> int:
        async with self._engine.connect() as conn:
            value = await conn.scalar(
                select(event_counter.c.last_seq).where(event_counter.c.id == _COUNTER_ID)
            )
        return int(value or 0)

    async def prune(self, *, older_than_s: float) -> int:
        """Forget published events older than that which no delivery still needs."""
        cutoff = self._clock() - older_than_s
        needed = exists().where(webhook_deliveries.c.event_seq == events.c.seq)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                delete(events).where(
                    events.c.seq.is_not(None), events.c.occurred_at < cutoff, ~needed
                )
            )
        return int(result.rowcount)


def _publish(
    conn: Connection, now: float, debounce_s: float, max_delay_s: float, batch: int
) -> int:
    is_postgres = conn.dialect.name == "postgresql"
    # Take the counter first: publishers take turns from here to the commit.
    last_seq = conn.scalar(
        update(event_counter)
        .where(event_counter.c.id == _COUNTER_ID)
        .values(last_seq=event_counter.c.last_seq)
        .returning(event_counter.c.last_seq)
    )
    if last_seq is None:  # a database whose counter row went missing
        conn.execute(insert(event_counter).values(id=_COUNTER_ID, last_seq=0))
        last_seq = 0
    # PostgreSQL: a row an append's transaction holds is being written: not
    # quiet, and waiting for it could deadlock with that transaction's batch.
    bounds = quiet_bounds(now, debounce_s, max_delay_s)
    quiet = quiet_changes(conn, bounds, limit=batch, skip_locked=is_postgres)
    # Each step one statement, however many documents went quiet at once (a
    # statement per event cost ~0.1 ms of the event loop's time each).
    if quiet:
        conn.execute(
            delete(pending_changes).where(pending_changes.c.document == bindparam("quiet")),
            [{"quiet": change.document} for change in quiet],
        )
        insert_updated_events(conn, quiet)
    unnumbered = conn.execute(
        select(events.c.id, events.c.document)
        .where(events.c.seq.is_(None))
        .order_by(events.c.id)
        .limit(batch)
    ).all()
    if not unnumbered:
        return 0
    subscriptions = list(conn.execute(select(webhook_subscriptions.c.id)).scalars())
    numbered = list(enumerate(unnumbered, int(last_seq) + 1))
    conn.execute(
        update(events).where(events.c.id == bindparam("event_id")).values(seq=bindparam("new_seq")),
        [{"event_id": row.id, "new_seq": seq} for seq, row in numbered],
    )
    deliveries: list[dict[str, Any]] = [
        {
            "subscription_id": subscription,
            "event_seq": seq,
            "document": row.document,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
        }
        for seq, row in numbered
        for subscription in subscriptions
    ]
    last_seq = numbered[-1][0]
    conn.execute(
        update(event_counter).where(event_counter.c.id == _COUNTER_ID).values(last_seq=last_seq)
    )
    if deliveries:
        conn.execute(insert(webhook_deliveries), deliveries)
    return len(unnumbered)
