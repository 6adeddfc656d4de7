"""The outbox's part of a write transaction (called by collab.storage.sql_writes).

Owns what a change's own transaction writes so that no event is ever lost: an
event row with no sequence number yet (`record_event`), or, for an append, the
document's one pending change (`note_changes`) - never a row per update - which
the publisher (collab.storage.outbox) turns into a `document.updated` event once
editing goes quiet. Both commit or roll back with the change itself, so a process
killed after the commit loses nothing.

What an append costs is kept small, since it runs on every commit:
- SQLite: the row is inserted if missing and otherwise left alone (no page
  written; its author only if it changed). The publisher reads when editing
  stopped from `documents.updated_at` and the newest update from the log: on
  SQLite transactions run one at a time, so a publisher never reads between an
  append and its pending row.
- PostgreSQL: a real upsert of `last_at` / `last_row`, because it also locks the
  row, which the publisher skips (SKIP LOCKED) until the append's transaction
  ends: without that lock a publisher could turn the row into an event between
  the append's insert and its commit, and the append would go untold.
- A snapshot that deletes log rows first raises `last_row` to the newest of them
  (`note_compacted`): the publisher must not lose them from the log's maximum.

Per-document order: any other event of a document first turns its pending
change into a `document.updated` event (`flush_pending`), in the same
transaction, so the edits before a save, restore or deletion are told first.

Synchronous, on the transaction's connection, like the rest of sql_writes.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Float,
    Integer,
    Select,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.engine import Connection

from collab.storage.events import EventType, updated_data
from collab.storage.sql_schema import documents, events, pending_changes, updates
from collab.storage.sqlite_forms import SqliteForm
from collab.storage.store import SaveSnapshot, SnapshotKind

_P = pending_changes.name
_SQLITE_NOTE_CHANGES = (
    f"INSERT INTO {_P} (document, first_at, last_at, first_row, last_row, author) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (document) DO UPDATE SET author = excluded.author "
    f"WHERE excluded.author IS NOT NULL AND excluded.author IS NOT {_P}.author"
)

_EVENT_COLUMNS = ("document", "type", "occurred_at", "data")
_SQLITE_INSERT_EVENT = SqliteForm(
    insert(events).values({name: bindparam(name) for name in _EVENT_COLUMNS}), _EVENT_COLUMNS
)
_SQLITE_HAS_PENDING = SqliteForm(
    select(pending_changes.c.document).where(pending_changes.c.document == bindparam("document")),
    ["document"],
)


def note_changes(
    conn: Connection, document: str, row_ids: list[int], author: str | None, now: float
) -> None:
    """The document's pending change now also covers these log rows."""
    first, last = min(row_ids), max(row_ids)
    driver = conn.connection.driver_connection
    if isinstance(driver, sqlite3.Connection):
        # The append's hot path: straight to the driver, like the insert itself.
        driver.execute(_SQLITE_NOTE_CHANGES, (document, now, now, first, last, author))
        return
    upsert = postgresql_insert(pending_changes).values(
        document=document, first_at=now, last_at=now, first_row=first, last_row=last, author=author
    )
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[pending_changes.c.document],
            set_={
                "last_at": upsert.excluded.last_at,
                "last_row": upsert.excluded.last_row,
                "author": func.coalesce(upsert.excluded.author, pending_changes.c.author),
            },
        )
    )


def note_compacted(conn: Connection, document: str, row_ids: tuple[int, ...] | None) -> None:
    """Before a snapshot deletes these log rows (None: all of the document's)."""
    newest = (
        conn.scalar(select(func.max(updates.c.id)).where(updates.c.document == document))
        if row_ids is None
        else max(row_ids, default=None)
    )
    if newest is None:
        return
    conn.execute(
        update(pending_changes)
        .where(pending_changes.c.document == document, pending_changes.c.last_row < newest)
        .values(last_row=newest)
    )


@dataclass(frozen=True, slots=True)
class PendingChange:
    """A document's pending change, with what the publisher decides by."""

    document: str
    first_at: float
    last_at: float
    first_row: int
    last_row: int
    author: str | None
    document_updated_at: float | None  # the documents row's (None: deleted)
    log_max: int | None  # the newest row of the document's log (None: none left)

    @classmethod
    def of(cls, row: Any, document_updated_at: Any, log_max: Any) -> PendingChange:
        return cls(
            row.document,
            float(row.first_at),
            float(row.last_at),
            int(row.first_row),
            int(row.last_row),
            row.author,
            None if document_updated_at is None else float(document_updated_at),
            None if log_max is None else int(log_max),
        )

    @property
    def quiet_since(self) -> float:
        """When the document was last edited, as far as the database says: the
        newest of `last_at` and the document's `updated_at` (which the store
        refreshes at most once a second, collab.storage.sql_writes.TouchCache)."""
        return max(self.last_at, self.document_updated_at or 0.0)

    @property
    def newest_row(self) -> int:
        return max(self.last_row, self.log_max or 0)


def flush_pending(conn: Connection, document: str) -> int:
    """Turn the document's pending change, if any, into its `document.updated` event;
    how many events that recorded (0 or 1). DELETE first: on PostgreSQL it waits
    for a publisher turning the same row into an event, then finds it gone (one
    event, not two)."""
    driver = conn.connection.driver_connection
    if (
        isinstance(driver, sqlite3.Connection)
        and _SQLITE_HAS_PENDING.run(driver, document).fetchone() is None
    ):
        # SQLite: the common case (nothing pending: a new document) asked
        # straight of the driver; the transaction holds the database's write
        # lock, so nothing can add one before the event is recorded.
        return 0
    deleted = conn.execute(
        delete(pending_changes)
        .where(pending_changes.c.document == document)
        .returning(*pending_changes.c)
    ).first()
    if deleted is None:
        return 0
    log_max = conn.scalar(select(func.max(updates.c.id)).where(updates.c.document == document))
    updated_at = conn.scalar(select(documents.c.updated_at).where(documents.c.name == document))
    insert_updated_events(conn, [PendingChange.of(deleted, updated_at, log_max)])
    return 1


def quiet_bounds(now: float, debounce_s: float, max_delay_s: float) -> dict[str, float]:
    """`QUIET`'s parameters at `now`: a change is quiet once nobody edited its
    document for `debounce_s`, or once it has waited `max_delay_s` (a document
    edited without pause is still told)."""
    return {"quiet_before": now - debounce_s, "waited_before": now - max_delay_s}


def quiet_changes(
    conn: Connection, bounds: dict[str, float], *, limit: int, skip_locked: bool = False
) -> list[PendingChange]:
    """The oldest `limit` pending changes that are quiet within `bounds`
    (`quiet_bounds`), oldest first. `skip_locked` (PostgreSQL): lock them, leaving
    out those an append's transaction holds."""
    query = _QUIET_LOCKED if skip_locked else _QUIET
    return [
        PendingChange.of(row, row.document_updated_at, row.log_max)
        for row in conn.execute(query, {**bounds, "limit": limit})
    ]


def _with_documents(query: Select[Any]) -> Select[Any]:
    return query.outerjoin(documents, documents.c.name == pending_changes.c.document)


# A pending change is quiet when its document was last edited at `quiet_before`
# or earlier (as `PendingChange.quiet_since` reads it: the newer of its `last_at`
# and the document's `updated_at`, a deleted document's counting as never), or
# it was begun at `waited_before` or earlier. Decided by the database, not by
# reading every pending change into Python: with thousands of documents being
# edited, that read took ~85 ms of the event loop on every pass (two a second).
QUIET = or_(
    and_(
        pending_changes.c.last_at <= bindparam("quiet_before", type_=Float()),
        or_(
            documents.c.updated_at.is_(None),
            documents.c.updated_at <= bindparam("quiet_before", type_=Float()),
        ),
    ),
    pending_changes.c.first_at <= bindparam("waited_before", type_=Float()),
)
HAS_QUIET = exists(_with_documents(select(pending_changes.c.document)).where(QUIET))


def _quiet_query(*, skip_locked: bool) -> Select[Any]:
    """`quiet_changes`'s query, built once (the events task runs it whenever
    `HAS_QUIET` says it has work)."""
    log_max = (
        select(func.max(updates.c.id))
        .where(updates.c.document == pending_changes.c.document)
        .scalar_subquery()
    )
    query = _with_documents(
        select(pending_changes, documents.c.updated_at.label("document_updated_at")).add_columns(
            log_max.label("log_max")
        )
    )
    query = (
        query.where(QUIET)
        .order_by(pending_changes.c.first_at)
        .limit(bindparam("limit", type_=Integer()))
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True, of=pending_changes)
    return query


_QUIET = _quiet_query(skip_locked=False)
_QUIET_LOCKED = _quiet_query(skip_locked=True)


def insert_updated_events(conn: Connection, changes: list[PendingChange]) -> None:
    """The `document.updated` events of pending changes (deleted by the caller),
    in order, in one statement (a publisher may turn a thousand at once)."""
    if changes:
        conn.execute(insert(events), [_updated_event_row(change) for change in changes])


def _updated_event_row(change: PendingChange) -> dict[str, Any]:
    data = updated_data(
        author=change.author, first_row=change.first_row, last_row=change.newest_row
    )
    return _event_row(change.document, EventType.DOCUMENT_UPDATED, change.quiet_since, data)


def record_event(
    conn: Connection, document: str, type_: EventType, now: float, data: dict[str, Any]
) -> int:
    """An event of `document`, after its pending change (see the module's docstring;
    a deletion flushes it itself, while the document's log is still there); how
    many events that recorded."""
    flushed = flush_pending(conn, document)
    _insert_event(conn, document, type_, now, data)
    return flushed + 1


def record_version_event(conn: Connection, op: SaveSnapshot, snapshot_id: int, now: float) -> int:
    """`version.saved` for a named version, `document.restored` for the
    pre-restore version a restore saves (automatic versions tell nothing); how
    many events that recorded."""
    if op.kind is SnapshotKind.NAMED:
        data = {"version": snapshot_id, "label": op.label, "author": op.author}
        return record_event(conn, op.document, EventType.VERSION_SAVED, now, data)
    if op.kind is SnapshotKind.PRE_RESTORE and op.restored_id is not None:
        data = {"version": op.restored_id, "pre_restore_version": snapshot_id, "author": op.author}
        return record_event(conn, op.document, EventType.DOCUMENT_RESTORED, now, data)
    return 0


def _insert_event(
    conn: Connection, document: str, type_: EventType, occurred_at: float, data: dict[str, Any]
) -> None:
    row = _event_row(document, type_, occurred_at, data)
    driver = conn.connection.driver_connection
    if isinstance(driver, sqlite3.Connection):
        _SQLITE_INSERT_EVENT.run(driver, *(row[name] for name in _EVENT_COLUMNS))
    else:
        conn.execute(insert(events).values(**row))


def _event_row(
    document: str, type_: EventType, occurred_at: float, data: dict[str, Any]
) -> dict[str, Any]:
    """An unnumbered event's row (the publisher gives it its `seq`)."""
    return {
        "document": document,
        "type": type_.value,
        "occurred_at": occurred_at,
        "data": json.dumps(data, separators=(",", ":"), ensure_ascii=False),
    }
