"""The writes of a batch other than appends: snapshots, deleted versions, deleted
documents, quarantined rows (the mixin `SnapshotWrites` of
collab.storage.sql_writes.WriteTransaction).

Apart from the appends because they are rare and long, and the appends are the
hot path; they share the transaction's state (`_conn`, `_now`, `_is_postgres`,
`_sqlite`, `touched`, `events_recorded`), which `WriteTransaction` sets. The safety rules
they keep - a snapshot's compare-and-set on `snapshot_seq`, exact deletion of
the rows it holds, one compactor per document, a deletion that waits for
appends and leaves a tombstone - are told in collab.storage.sql_writes.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import BigInteger, any_, bindparam, delete, func, insert, select, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from collab.storage.events import EventType
from collab.storage.outbox_writes import (
    flush_pending,
    note_compacted,
    record_event,
    record_version_event,
)
from collab.storage.sql_schema import documents, quarantine, snapshots, tombstones, updates
from collab.storage.sqlite_forms import SqliteForm
from collab.storage.store import (
    CompactionBusy,
    DeleteDocument,
    DeleteSnapshots,
    DocumentDeleted,
    OpDeclined,
    QuarantineRows,
    SaveSnapshot,
    SnapshotConflict,
    SnapshotKind,
)

# pg_try_advisory_xact_lock(class, hashtext(document)): the class keeps these
# locks apart from any other advisory locks on the database.
_COMPACTION_LOCK_CLASS = 0x636F6C6C  # "coll"
# The same for creating and deleting a document's row (shared / exclusive).
DOCUMENT_LOCK_CLASS = 0x636F6C64  # "cold"
# A snapshot's log rows: one by one on SQLite's driver, as one array on PostgreSQL.
_SQLITE_DELETE_ROW = SqliteForm(
    delete(updates).where(
        updates.c.document == bindparam("document"), updates.c.id == bindparam("id")
    ),
    ("document", "id"),
).sql
_POSTGRES_DELETE_ROWS = delete(updates).where(
    updates.c.document == bindparam("document"),
    updates.c.id == any_(bindparam("ids", type_=postgresql.ARRAY(BigInteger))),
)


def storable_text(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; a typed "\\0" must not make a write fail."""
    return None if text is None else text.replace("\x00", "\ufffd")


class SnapshotWrites:
    """Snapshots, version deletions, document deletions and quarantine, on the
    open transaction of a `WriteTransaction`."""

    _conn: Connection
    _now: float
    _is_postgres: bool
    _sqlite: sqlite3.Connection | None
    touched: dict[str, float | None]
    events_recorded: int

    def _save_snapshot(self, op: SaveSnapshot) -> int | OpDeclined:
        conn = self._conn
        if self._is_postgres and not conn.scalar(
            select(
                func.pg_try_advisory_xact_lock(_COMPACTION_LOCK_CLASS, func.hashtext(op.document))
            )
        ):
            return CompactionBusy(f"doc={op.document}: another process is writing a snapshot")
        # An UPDATE, never an upsert: a snapshot that lands after its document
        # was deleted (a save that waited for writes, another process's
        # compaction) must not bring the document back.
        bump = (
            update(documents)
            .where(documents.c.name == op.document)
            .values(snapshot_seq=documents.c.snapshot_seq + 1, updated_at=self._now)
        )
        if op.base_seq is not None:
            bump = bump.where(documents.c.snapshot_seq == op.base_seq)
        if op.incarnation is not None:
            bump = bump.where(documents.c.incarnation == op.incarnation)
        if (conn.execute(bump)).rowcount == 0:
            current = conn.execute(
                select(documents.c.snapshot_seq, documents.c.incarnation).where(
                    documents.c.name == op.document
                )
            ).first()
            if current is None or op.incarnation not in (None, current.incarnation):
                found = None if current is None else int(current.incarnation)
                return DocumentDeleted(op.document, op.incarnation, found)
            return SnapshotConflict(op.document, op.base_seq or 0, int(current.snapshot_seq))
        self.touched[op.document] = self._now
        snapshot_id = self._write_snapshot_row(op)
        self.events_recorded += record_version_event(conn, op, snapshot_id, self._now)
        note_compacted(conn, op.document, op.row_ids)  # before the rows go
        if op.row_ids is None:
            conn.execute(delete(updates).where(updates.c.document == op.document))
        else:
            self._delete_rows(op.document, sorted(op.row_ids))
        return snapshot_id

    def _delete_rows(self, document: str, ids: list[int]) -> None:
        """Delete these log rows of `document`. A compaction deletes a thousand
        rows: SQLAlchemy's handling of an IN list of a thousand values (each
        coerced, then expanded into the statement) cost four times SQLite's
        deletions, while every room's edits waited for the writer. So SQLite's
        driver deletes them one by one through the primary key, and PostgreSQL
        takes the ids as one array parameter."""
        if self._sqlite is not None:
            self._sqlite.executemany(_SQLITE_DELETE_ROW, [(document, row_id) for row_id in ids])
            return
        self._conn.execute(_POSTGRES_DELETE_ROWS, {"document": document, "ids": ids})

    def _write_snapshot_row(self, op: SaveSnapshot) -> int:
        conn = self._conn
        values = {
            "updated_at": self._now,
            "size_bytes": len(op.state),
            "preview": storable_text(op.preview),
            "state": op.state,
        }
        newest = (
            conn.execute(
                select(snapshots.c.id, snapshots.c.kind, snapshots.c.created_at)
                .where(snapshots.c.document == op.document)
                .order_by(snapshots.c.id.desc())
                .limit(1)
            )
        ).first()
        if (
            op.kind is SnapshotKind.AUTO
            and newest is not None
            and newest.kind == SnapshotKind.AUTO
            and self._now - newest.created_at < op.merge_window_s
        ):
            # Still inside the newest automatic version's window: it absorbs this state.
            conn.execute(update(snapshots).where(snapshots.c.id == newest.id).values(values))
            return int(newest.id)
        result = conn.execute(
            insert(snapshots).values(
                document=op.document,
                created_at=self._now,
                kind=op.kind.value,
                label=storable_text(op.label),
                author=storable_text(op.author),
                **values,
            )
        )
        key = result.inserted_primary_key
        assert key is not None  # a single-row INSERT always has one
        return int(key[0])

    def _delete_document(self, op: DeleteDocument) -> None:
        conn = self._conn
        if self._is_postgres:
            # Waits for a process creating the row (and keeps new ones out) until
            # this commits. Appends to the existing row hold it FOR KEY SHARE:
            # the DELETE waits for them, then cascades to what they inserted.
            conn.execute(
                select(func.pg_advisory_xact_lock(DOCUMENT_LOCK_CLASS, func.hashtext(op.document)))
            )
        # While its log is there to read.
        self.events_recorded += flush_pending(conn, op.document)
        deleted = conn.execute(delete(documents).where(documents.c.name == op.document))
        if deleted.rowcount:
            self.events_recorded += record_event(
                conn, op.document, EventType.DOCUMENT_DELETED, self._now, {}
            )
        dialect_insert = postgresql_insert if self._is_postgres else sqlite_insert
        tombstone = dialect_insert(tombstones).values(
            name=op.document, state_vector=op.tombstone, deleted_at=self._now, deletions=1
        )
        conn.execute(
            tombstone.on_conflict_do_update(
                index_elements=[tombstones.c.name],
                set_={
                    "state_vector": tombstone.excluded.state_vector,
                    "deleted_at": tombstone.excluded.deleted_at,
                    # The next document of this name is a new incarnation.
                    "deletions": tombstones.c.deletions + 1,
                },
            )
        )
        self.touched[op.document] = None

    def _quarantine(self, op: QuarantineRows) -> None:
        conn = self._conn
        for source, table, ids in (
            ("snapshots", snapshots, op.snapshot_ids),
            ("updates", updates, op.row_ids),
        ):
            if not ids:
                continue
            where = (table.c.document == op.document) & table.c.id.in_(ids)
            data = table.c.data if source == "updates" else table.c.state
            rows = (conn.execute(select(table.c.id, data).where(where))).all()
            if rows:
                conn.execute(
                    insert(quarantine),
                    [_quarantine_row(op, source, row, self._now) for row in rows],
                )
            conn.execute(delete(table).where(where))

    def _delete_snapshots(self, op: DeleteSnapshots) -> None:
        conn = self._conn
        newest_id = conn.scalar(
            select(func.max(snapshots.c.id)).where(snapshots.c.document == op.document)
        )
        doomed = [i for i in op.ids if i != newest_id]  # loading needs the newest
        if doomed:
            conn.execute(
                delete(snapshots).where(
                    snapshots.c.document == op.document, snapshots.c.id.in_(doomed)
                )
            )


def _quarantine_row(op: QuarantineRows, source: str, row: Any, now: float) -> dict[str, Any]:
    return {
        "document": op.document,
        "source": source,
        "source_id": row[0],
        "data": row[1],
        "reason": storable_text(op.reason),
        "quarantined_at": now,
    }
