"""The outbox's part of a write transaction (called by collab.storage.sql_writes).

Owns what a change's own transaction writes so that no event is ever lost: an
event row with no sequence number yet (`record_event`), or, for an append, the
document's one pending change (`note_changes`), upserted - never a row per
update - which the publisher (collab.storage.outbox) turns into a
`document.updated` event once editing goes quiet. Both commit or roll back with
the change itself, so a process killed after the commit loses nothing.

Per-document order: any other event of a document first turns its pending
change into a `document.updated` event (`flush_pending`), in the same
transaction, so the edits before a save, restore or deletion are told first.

Synchronous, on the transaction's connection, like the rest of sql_writes.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from sqlalchemy import delete, func, insert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.engine import Connection

from collab.storage.events import EventType, updated_data
from collab.storage.sql_schema import events, pending_changes

_P = pending_changes.name
_SQLITE_NOTE_CHANGES = (
    f"INSERT INTO {_P} (document, first_at, last_at, first_row, last_row, updates, author) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (document) DO UPDATE SET "
    f"last_at = excluded.last_at, last_row = excluded.last_row, "
    f"updates = {_P}.updates + excluded.updates, "
    f"author = COALESCE(excluded.author, {_P}.author)"
)


def note_changes(
    conn: Connection,
    document: str,
    row_ids: list[int],
    author: str | None,
    now: float,
) -> None:
    """The document's pending change now also covers these log rows."""
    values = (document, now, now, min(row_ids), max(row_ids), len(row_ids), author)
    driver = conn.connection.driver_connection
    if isinstance(driver, sqlite3.Connection):
        # The append's hot path: straight to the driver, like the insert itself.
        driver.execute(_SQLITE_NOTE_CHANGES, values)
        return
    columns = ("document", "first_at", "last_at", "first_row", "last_row", "updates", "author")
    upsert = postgresql_insert(pending_changes).values(dict(zip(columns, values, strict=True)))
    conn.execute(
        upsert.on_conflict_do_update(
            index_elements=[pending_changes.c.document],
            set_={
                "last_at": upsert.excluded.last_at,
                "last_row": upsert.excluded.last_row,
                "updates": pending_changes.c.updates + upsert.excluded.updates,
                "author": func.coalesce(upsert.excluded.author, pending_changes.c.author),
            },
        )
    )


def flush_pending(conn: Connection, document: str) -> None:
    """Turn the document's pending change, if any, into its `document.updated` event."""
    row = conn.execute(
        delete(pending_changes)
        .where(pending_changes.c.document == document)
        .returning(*pending_changes.c)
    ).first()
    if row is not None:
        insert_updated_event(conn, row)


def insert_updated_event(conn: Connection, row: Any) -> None:
    """The `document.updated` event of a pending change's row (deleted by the caller)."""
    data = updated_data(
        author=row.author,
        first_row=int(row.first_row),
        last_row=int(row.last_row),
        updates=int(row.updates),
    )
    _insert_event(conn, row.document, EventType.DOCUMENT_UPDATED, float(row.last_at), data)


def record_event(
    conn: Connection, document: str, type_: EventType, now: float, data: dict[str, Any]
) -> None:
    """An event of `document`, after its pending change (see the module's docstring)."""
    flush_pending(conn, document)
    _insert_event(conn, document, type_, now, data)


def _insert_event(
    conn: Connection, document: str, type_: EventType, occurred_at: float, data: dict[str, Any]
) -> None:
    conn.execute(
        insert(events).values(
            document=document,
            type=type_.value,
            occurred_at=occurred_at,
            data=json.dumps(data, separators=(",", ":"), ensure_ascii=False),
        )
    )
