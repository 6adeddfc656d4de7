"""One write transaction: the SQL behind each `WriteOp` (see collab.storage.store).

Owns what a batch does inside the single transaction `SqlStore.commit` opens:
log rows inserted with their ids returned, snapshots saved with a
compare-and-set on the document's snapshot sequence and exact deletion of the
rows they contain, versions thinned, documents deleted (tombstoned), damaged
rows quarantined. Owns the store's one cache too (`TouchCache`: which document
rows are known to exist and be fresh), which only a committed transaction may
update. Never commits or retries: committing is the store's business, retrying
the writer's.

Synchronous on purpose: a whole batch runs in ONE call on one connection (SQLite:
a plain sqlite3 connection on the loop or on the commit thread, see
collab.storage.sqlite_commit; PostgreSQL: one `run_sync`), instead of one thread
hop per statement, which cost more than the statements themselves.

Several processes may write one document (a cluster). What keeps that safe:
- a snapshot deletes exactly the rows its room applied, never "everything up
  to the newest id" (which could include a row another process committed and
  this room has not seen);
- a snapshot is saved only if built on the current `snapshot_seq`, bumped in
  the same UPDATE that checks it (row-locked, so two cannot both pass); a stale
  one is declined with `SnapshotConflict` and the room catches up and retries;
- on PostgreSQL one compactor per document at a time: a transaction-level
  advisory lock, tried without waiting (`CompactionBusy` if another process
  holds it). SQLite lets one connection write at a time anyway.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Insert, Table, delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from collab.storage.sql_schema import documents, quarantine, snapshots, tombstones, updates
from collab.storage.store import (
    AppendUpdate,
    CompactionBusy,
    DeleteDocument,
    DeleteSnapshots,
    OpDeclined,
    QuarantineRows,
    SaveSnapshot,
    SnapshotConflict,
    SnapshotKind,
    WriteOp,
)

TOUCH_INTERVAL_S = 1.0
# pg_try_advisory_xact_lock(class, hashtext(document)): the class keeps these
# locks apart from any other advisory locks on the database.
_COMPACTION_LOCK_CLASS = 0x636F6C6C  # "coll"
_SQLITE_APPEND = (
    f"INSERT INTO {updates.name} ({updates.c.document.name}, {updates.c.data.name}, "
    f"{updates.c.created_at.name}) VALUES (?, ?, ?)"
)
# Rows deleted per statement (well under both engines' bound-parameter limits).
_DELETE_CHUNK = 5000


def storable_text(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; a typed "\\0" must not make a write fail."""
    return None if text is None else text.replace("\x00", "\ufffd")


class TouchCache:
    """When each document row was last written by a committed transaction.

    A burst of small commits to one document then skips the UPDATE of its
    `updated_at` (refreshed at most once per `interval_s`), the costliest part of
    a one-update commit after the insert itself. Invariant: it only believes what
    a committed transaction wrote (`note_committed`), so a rolled-back batch can
    never make a later one skip creating a row that does not exist. Read by the
    transaction that runs on the commit thread, written by the store on the loop
    after that transaction committed: never both at once, as one writer commits.
    """

    def __init__(self, interval_s: float = TOUCH_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._touched_at: dict[str, float] = {}

    def is_fresh(self, name: str, now: float) -> bool:
        """The document row exists and its `updated_at` is recent enough."""
        touched_at = self._touched_at.get(name)
        return touched_at is not None and now - touched_at < self._interval_s

    def note_committed(self, touched: Mapping[str, float | None]) -> None:
        """What a committed transaction wrote: a time, or None for a deleted row."""
        for name, touched_at in touched.items():
            if touched_at is None:
                self._touched_at.pop(name, None)
            else:
                self._touched_at[name] = touched_at


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one transaction did: a result per op (see `DocumentStore.commit`), and
    the document rows it wrote, for the `TouchCache` once it has committed."""

    results: list[int | OpDeclined | None]
    touched: dict[str, float | None]


def run_batch(
    conn: Connection, ops: Sequence[WriteOp], now: float, touches: TouchCache
) -> BatchOutcome:
    """Run `ops` in order on `conn`'s open transaction (the caller commits it)."""
    transaction = WriteTransaction(conn, now, touches)
    return BatchOutcome(transaction.run(ops), transaction.touched)


class WriteTransaction:
    """The ops of one batch, run in order on one open transaction."""

    def __init__(self, conn: Connection, now: float, touches: TouchCache) -> None:
        self._conn = conn
        self._now = now
        self._is_postgres = conn.dialect.name == "postgresql"
        self._touches = touches  # read only: the store updates it after the commit
        # The document rows this transaction wrote (None: deleted in it).
        self.touched: dict[str, float | None] = {}

    def run(self, ops: Sequence[WriteOp]) -> list[int | OpDeclined | None]:
        results: list[int | OpDeclined | None] = [None] * len(ops)
        appends: list[tuple[int, AppendUpdate]] = []
        for index, op in enumerate(ops):
            if isinstance(op, AppendUpdate):
                appends.append((index, op))
                continue
            self._append(appends, results)
            appends = []
            if isinstance(op, SaveSnapshot):
                results[index] = self._save_snapshot(op)
            elif isinstance(op, DeleteSnapshots):
                self._delete_snapshots(op)
            elif isinstance(op, DeleteDocument):
                self._delete_document(op)
            elif isinstance(op, QuarantineRows):
                self._quarantine(op)
        self._append(appends, results)
        return results

    def _append(
        self, appends: list[tuple[int, AppendUpdate]], results: list[int | OpDeclined | None]
    ) -> None:
        if not appends:
            return
        # Each document row must exist before its updates (foreign key): once per
        # batch, in name order so two processes' batches never lock rows crosswise.
        for document in sorted({op.document for _, op in appends}):
            self._touch(document)
        driver = self._conn.connection.driver_connection
        row_ids: list[int]
        if isinstance(driver, sqlite3.Connection):
            row_ids = self._append_sqlite(driver, [op for _, op in appends])
        else:
            rows = [
                {"document": op.document, "data": op.update, "created_at": self._now}
                for _, op in appends
            ]
            inserted = self._conn.execute(
                insert(updates).returning(updates.c.id, sort_by_parameter_order=True), rows
            )
            row_ids = [int(row[0]) for row in inserted]
        for (index, _), row_id in zip(appends, row_ids, strict=True):
            results[index] = row_id

    def _append_sqlite(self, driver: sqlite3.Connection, ops: list[AppendUpdate]) -> list[int]:
        """The hottest statement, straight to the driver on this transaction's own
        connection: SQLAlchemy's execution context costs more than SQLite's insert
        itself. `lastrowid` is the AUTOINCREMENT id."""
        cursor = driver.cursor()
        try:
            row_ids = []
            for op in ops:
                cursor.execute(_SQLITE_APPEND, (op.document, op.update, self._now))
                row_id = cursor.lastrowid
                assert row_id is not None  # set by every INSERT that succeeded
                row_ids.append(row_id)
            return row_ids
        finally:
            cursor.close()

    def _touch(self, name: str) -> None:
        if name in self.touched:
            if self.touched[name] is not None:
                return  # already written in this transaction
        elif self._touches.is_fresh(name, self._now):
            return  # the row exists (a committed transaction wrote it) and is fresh
        self.touched[name] = self._now
        # An upsert: another process may create the same document at the same moment.
        self._conn.execute(
            self._upsert(
                documents,
                {"name": name, "created_at": self._now, "updated_at": self._now},
                update=("updated_at",),
            )
        )

    def _upsert(self, table: Table, values: dict[str, Any], *, update: Sequence[str]) -> Insert:
        """INSERT ... ON CONFLICT (primary key) DO UPDATE `update` (both engines)."""
        dialect_insert = postgresql_insert if self._is_postgres else sqlite_insert
        statement = dialect_insert(table).values(values)
        return statement.on_conflict_do_update(
            index_elements=[c.name for c in table.primary_key],
            set_={name: statement.excluded[name] for name in update},
        )

    def _save_snapshot(self, op: SaveSnapshot) -> int | OpDeclined:
        conn = self._conn
        if self._is_postgres and not conn.scalar(
            select(
                func.pg_try_advisory_xact_lock(_COMPACTION_LOCK_CLASS, func.hashtext(op.document))
            )
        ):
            return CompactionBusy(f"doc={op.document}: another process is writing a snapshot")
        self._touch(op.document)
        bump = (
            update(documents)
            .where(documents.c.name == op.document)
            .values(snapshot_seq=documents.c.snapshot_seq + 1)
        )
        if op.base_seq is not None:
            bump = bump.where(documents.c.snapshot_seq == op.base_seq)
        if (conn.execute(bump)).rowcount == 0:
            current = conn.scalar(
                select(documents.c.snapshot_seq).where(documents.c.name == op.document)
            )
            return SnapshotConflict(op.document, op.base_seq or 0, int(current or 0))
        snapshot_id = self._write_snapshot_row(op)
        in_document = updates.c.document == op.document
        if op.row_ids is None:
            conn.execute(delete(updates).where(in_document))
        else:
            ids = sorted(op.row_ids)
            for start in range(0, len(ids), _DELETE_CHUNK):
                chunk = ids[start : start + _DELETE_CHUNK]
                conn.execute(delete(updates).where(in_document, updates.c.id.in_(chunk)))
        return snapshot_id

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
        conn.execute(delete(documents).where(documents.c.name == op.document))
        values = {"name": op.document, "state_vector": op.tombstone, "deleted_at": self._now}
        conn.execute(self._upsert(tombstones, values, update=("state_vector", "deleted_at")))
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
