"""One write transaction: the SQL behind each `WriteOp` (see collab.storage.store).

Owns what a batch does inside the single transaction `SqlStore.commit` opens:
the dispatch of its ops in order and the appends - log rows inserted with their
ids returned, under the document's incarnation, with their attribution
(collab.storage.sql_attribution) - while snapshots saved with a compare-and-set
on the document's snapshot sequence and exact deletion of the rows they
contain, versions thinned, documents deleted (tombstoned) and damaged rows
quarantined are `SnapshotWrites` (collab.storage.sql_snapshot_writes); and, in
the same transaction, each change's event in the outbox
(collab.storage.outbox_writes). It reads the store's one cache
(collab.storage.touch_cache), which only a committed transaction may update.
Never commits or retries: committing is the store's business, retrying the
writer's.

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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from collab.storage.events import EventType
from collab.storage.outbox_writes import note_changes, record_event
from collab.storage.sql_attribution import write_attribution
from collab.storage.sql_schema import documents, tombstones, updates
from collab.storage.sql_snapshot_writes import DOCUMENT_LOCK_CLASS, SnapshotWrites
from collab.storage.sqlite_forms import SqliteForm
from collab.storage.store import (
    AppendUpdate,
    DeleteDocument,
    DeleteSnapshots,
    DocumentDeleted,
    OpDeclined,
    QuarantineRows,
    SaveSnapshot,
    WriteOp,
)
from collab.storage.touch_cache import TouchCache

_SQLITE_INCARNATIONS = (
    f"SELECT {documents.c.name.name}, {documents.c.incarnation.name} FROM {documents.name} "
    f"WHERE {documents.c.name.name} IN ({{}})"
)
_SQLITE_APPEND = (
    f"INSERT INTO {updates.name} ({updates.c.document.name}, {updates.c.data.name}, "
    f"{updates.c.created_at.name}) VALUES (?, ?, ?)"
)

# A new document's row: its incarnation is its name's count of deletions.
_DELETIONS = select(tombstones.c.deletions).where(tombstones.c.name == bindparam("name"))
_SQLITE_DELETIONS = SqliteForm(_DELETIONS, ["name"])
_CREATE_NAMES = ("name", "created_at", "updated_at", "incarnation")
_TOUCH = (
    update(documents)
    .where(documents.c.name == bindparam("document"))
    .values(updated_at=bindparam("touched_at"))
)
_SQLITE_TOUCH = SqliteForm(_TOUCH, ["touched_at", "document"])


def _create_statement(dialect_insert: Any) -> Any:
    values: dict[str, Any] = {name: bindparam(name) for name in _CREATE_NAMES}
    return (
        dialect_insert(documents)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[documents.c.name])
    )


_POSTGRES_CREATE = _create_statement(postgresql_insert)
_SQLITE_CREATE = SqliteForm(_create_statement(sqlite_insert), _CREATE_NAMES)


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one transaction did: a result per op (see `DocumentStore.commit`), the
    document rows it wrote, for the `TouchCache` once it has committed, and how
    many outbox events it recorded (the events task is woken for them)."""

    results: list[int | OpDeclined | None]
    touched: dict[str, float | None]
    events_recorded: int = 0


def run_batch(
    conn: Connection, ops: Sequence[WriteOp], now: float, touches: TouchCache
) -> BatchOutcome:
    """Run `ops` in order on `conn`'s open transaction (the caller commits it)."""
    transaction = WriteTransaction(conn, now, touches)
    results = transaction.run(ops)
    return BatchOutcome(results, transaction.touched, transaction.events_recorded)


class WriteTransaction(SnapshotWrites):
    """The ops of one batch, run in order on one open transaction."""

    def __init__(self, conn: Connection, now: float, touches: TouchCache) -> None:
        self._conn = conn
        self._now = now
        self._is_postgres = conn.dialect.name == "postgresql"
        # SQLite's own connection under `conn`, for the statements sent straight
        # to it (`SqliteForm`); None on PostgreSQL.
        driver = conn.connection.driver_connection
        self._sqlite = driver if isinstance(driver, sqlite3.Connection) else None
        self._touches = touches  # read only: the store updates it after the commit
        # The document rows this transaction wrote (None: deleted in it).
        self.touched: dict[str, float | None] = {}
        self.events_recorded = 0  # outbox event rows written (not pending changes)

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
                self._touch(name)
        accepted: list[tuple[int, AppendUpdate]] = []
        for index, op in appends:
            current = incarnations.get(op.document)
            if current is None or op.incarnation not in (None, current):
                results[index] = DocumentDeleted(op.document, op.incarnation, current)
            else:
                accepted.append((index, op))
        if not accepted:
            return
        row_ids: list[int]
        if self._sqlite is not None:
            row_ids = self._append_sqlite(self._sqlite, [op for _, op in accepted])
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

    def _touch(self, name: str) -> None:
        """Refresh the document's `updated_at` (at most once a second, `TouchCache`).
        On SQLite straight to the driver: through SQLAlchemy this one statement
        (its execution context, and the transaction SQLAlchemy then begins and
        commits around the batch) cost ~280 us a commit, nearly three times the
        rest of a one-append commit (bench/RESULTS.md, session 13): a document
        edited less than once a second paid it on every commit."""
        if self._sqlite is not None:
            _SQLITE_TOUCH.run(self._sqlite, self._now, name)
        else:
            self._conn.execute(_TOUCH, {"touched_at": self._now, "document": name})
        self.touched[name] = self._now

    def _lock_documents(self, names: list[str]) -> dict[str, int]:
        """The incarnation of each of `names` that has a row, which no deletion
        can remove before this transaction ends (PostgreSQL's FOR KEY SHARE blocks
        a DELETE, not another process's appends or snapshots)."""
        if self._sqlite is not None:
            # Every batch on SQLite: straight to the driver (see `_append_sqlite`).
            marks = ",".join("?" * len(names))
            cursor = self._sqlite.execute(_SQLITE_INCARNATIONS.format(marks), names)
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
        incarnation it would have (or do not say); its incarnation, or None.
        On SQLite straight to the driver: every new document's first commit runs it."""
        sqlite_driver = self._sqlite
        if sqlite_driver is not None:
            row = _SQLITE_DELETIONS.run(sqlite_driver, name).fetchone()
            deletions = None if row is None else row[0]
        else:
            # Shared: creators of one name do not wait for each other, only for a
            # deletion of it (which takes the lock exclusively), and it for them.
            self._conn.execute(
                select(func.pg_advisory_xact_lock_shared(DOCUMENT_LOCK_CLASS, func.hashtext(name)))
            )
            deletions = self._conn.scalar(_DELETIONS, {"name": name})
        incarnation = int(deletions or 0)
        if incarnation not in wanted and None not in wanted:
            return None  # deleted since those updates were made: no document for them
        # Another process may create it at the same moment (the same
        # incarnation: the advisory lock keeps deletions out meanwhile).
        values = (name, self._now, self._now, incarnation)
        if sqlite_driver is not None:
            created = _SQLITE_CREATE.run(sqlite_driver, *values).rowcount
        else:
            created = self._conn.execute(
                _POSTGRES_CREATE, dict(zip(_CREATE_NAMES, values, strict=True))
            ).rowcount
        if created:  # this transaction made it, not another process's
            self.events_recorded += record_event(
                self._conn, name, EventType.DOCUMENT_CREATED, self._now, {}
            )
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
