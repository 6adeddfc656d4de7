"""One write transaction: the SQL behind each `WriteOp` (see collab.storage.store).

Owns what a batch does inside the single transaction `SqlStore.commit` opens:
log rows inserted with their ids returned, snapshots saved with a
compare-and-set on the document's snapshot sequence and exact deletion of the
rows they contain, versions thinned, documents deleted (tombstoned), damaged
rows quarantined; and, in the same transaction, each change's event in the
outbox (collab.storage.outbox_writes). Owns the store's one cache too
(`TouchCache`: which document rows are known to exist and be fresh), which only
a committed transaction may update. Never commits or retries: committing is
the store's business, retrying the writer's.

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
  holds it). SQLite lets one connection write at a time anyway;
- a deletion cannot race a write back to life: every batch of appends reads
  each document's row - its incarnation - under a lock a deletion must wait for
  (PostgreSQL: FOR KEY SHARE; SQLite: the database's write lock, which the
  batch holds from its BEGIN IMMEDIATE, see collab.storage.sqlite_commit), and
  inserts only the updates made for that incarnation. A missing row is created
  only if the tombstone's count of deletions is the incarnation the updates
  were made for; creating a row and deleting one take the document's advisory
  lock (shared / exclusive), so neither slips between the other's read and
  write. A snapshot never creates a row.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from collab.storage.events import EventType
from collab.storage.outbox_writes import (
    flush_pending,
    note_changes,
    note_compacted,
    record_event,
    record_version_event,
)
from collab.storage.sql_attribution import write_attribution
from collab.storage.sql_schema import documents, quarantine, snapshots, tombstones, updates
from collab.storage.store import (
    AppendUpdate,
    CompactionBusy,
    DeleteDocument,
    DeleteSnapshots,
    DocumentDeleted,
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
# The same for creating and deleting a document's row (shared / exclusive).
_DOCUMENT_LOCK_CLASS = 0x636F6C64  # "cold"
_SQLITE_INCARNATIONS = (
    f"SELECT {documents.c.name.name}, {documents.c.incarnation.name} FROM {documents.name} "
    f"WHERE {documents.c.name.name} IN ({{}})"
)
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
    a one-update commit after the insert itself. It decides nothing else: every
    batch reads (and locks) the rows it appends to, so a row deleted behind the
    cache's back is noticed. Invariant: it only believes what a committed
    transaction wrote (`note_committed`). Read by the transaction that runs on
    the commit thread, written by the store on the loop after that transaction
    committed: never both at once, as one writer commits.
    """

    def __init__(self, interval_s: float = TOUCH_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._touched_at: dict[str, float] = {}

    def is_fresh(self, name: str, now: float) -> bool:
        """The document row's `updated_at` is recent enough."""
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
        # Each document row must exist, at the incarnation the updates were made
        # for, before they are inserted (and go on existing until the commit).
        # Name order, so two processes' batches never lock rows crosswise.
        names = sorted({op.document for _, op in appends})
        incarnations = self._lock_documents(names)
        for name in names:
            if name not in incarnations:
                wanted = {op.incarnation for _, op in appends if op.document == name}
                created = self._create_document(name, wanted)
                if created is not None:
                    incarnations[name] = created
            elif name not in self.touched and not self._touches.is_fresh(name, self._now):
                self._conn.execute(
                    update(documents).where(documents.c.name == name).values(updated_at=self._now)
                )
                self.touched[name] = self._now
        accepted: list[tuple[int, AppendUpdate]] = []
        for index, op in appends:
            current = incarnations.get(op.document)
            if current is None or op.incarnation not in (None, current):
                results[index] = DocumentDeleted(op.document, op.incarnation, current)
            else:
                accepted.append((index, op))
        if not accepted:
            return
        driver = self._conn.connection.driver_connection
        row_ids: list[int]
        if isinstance(driver, sqlite3.Connection):
            row_ids = self._append_sqlite(driver, [op for _, op in accepted])
        else:
            rows = [
                {"document": op.document, "data": op.update, "created_at": self._now}
                for _, op in accepted
            ]
            inserted = self._conn.execute(
                insert(updates).returning(updates.c.id, sort_by_parameter_order=True), rows
            )
            row_ids = [int(row[0]) for row in inserted]
        changed: dict[str, tuple[list[int], str | None]] = {}
        for (index, op), row_id in zip(accepted, row_ids, strict=True):
            results[index] = row_id
            ids, _ = changed.setdefault(op.document, ([], None))
            ids.append(row_id)
            if op.author is not None:
                changed[op.document] = (ids, op.author)
        # Name order, as the document rows: two processes' batches never lock
        # pending changes crosswise (PostgreSQL's upsert locks the row).
        for name, (ids, author) in sorted(changed.items()):
            note_changes(self._conn, name, ids, author, self._now)
        attributed = [op for _, op in accepted if op.claims or op.sessions]
        if attributed:
            write_attribution(self._conn, attributed, self._now)

    def _lock_documents(self, names: list[str]) -> dict[str, int]:
        """The incarnation of each of `names` that has a row, which no deletion
        can remove before this transaction ends (PostgreSQL's FOR KEY SHARE blocks
        a DELETE, not another process's appends or snapshots)."""
        driver = self._conn.connection.driver_connection
        if isinstance(driver, sqlite3.Connection):
            # Every batch on SQLite: straight to the driver (see `_append_sqlite`).
            cursor = driver.execute(_SQLITE_INCARNATIONS.format(",".join("?" * len(names))), names)
            try:
                return {name: int(incarnation) for name, incarnation in cursor.fetchall()}
            finally:
                cursor.close()
        rows = self._conn.execute(
            select(documents.c.name, documents.c.incarnation)
            .where(documents.c.name.in_(names))
            .order_by(documents.c.name)
            .with_for_update(read=True, key_share=True)
        )
        return {row.name: int(row.incarnation) for row in rows}

    def _create_document(self, name: str, wanted: set[int | None]) -> int | None:
        """Create the row of document `name` if updates were made for the
        incarnation it would have (or do not say); its incarnation, or None."""
        if self._is_postgres:
            # Shared: creators of one name do not wait for each other, only for a
            # deletion of it (which takes the lock exclusively), and it for them.
            self._conn.execute(
                select(func.pg_advisory_xact_lock_shared(_DOCUMENT_LOCK_CLASS, func.hashtext(name)))
            )
        deletions = self._conn.scalar(
            select(tombstones.c.deletions).where(tombstones.c.name == name)
        )
        incarnation = int(deletions or 0)
        if incarnation not in wanted and None not in wanted:
            return None  # deleted since those updates were made: no document for them
        dialect_insert = postgresql_insert if self._is_postgres else sqlite_insert
        created = self._conn.execute(
            dialect_insert(documents)
            .values(name=name, created_at=self._now, updated_at=self._now, incarnation=incarnation)
            # Another process may create it at the same moment (the same
            # incarnation: the advisory lock keeps deletions out meanwhile).
            .on_conflict_do_nothing(index_elements=[documents.c.name])
        )
        if created.rowcount:  # this transaction made it, not another process's
            record_event(self._conn, name, EventType.DOCUMENT_CREATED, self._now, {})
        self.touched[name] = self._now
        return self._lock_documents([name]).get(name)

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
        record_version_event(conn, op, snapshot_id, self._now)
        note_compacted(conn, op.document, op.row_ids)  # before the rows go
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
        if self._is_postgres:
            # Waits for a process creating the row (and keeps new ones out) until
            # this commits. Appends to the existing row hold it FOR KEY SHARE:
            # the DELETE waits for them, then cascades to what they inserted.
            conn.execute(
                select(func.pg_advisory_xact_lock(_DOCUMENT_LOCK_CLASS, func.hashtext(op.document)))
            )
        flush_pending(conn, op.document)  # while its log is there to read
        deleted = conn.execute(delete(documents).where(documents.c.name == op.document))
        if deleted.rowcount:
            record_event(conn, op.document, EventType.DOCUMENT_DELETED, self._now, {})
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
