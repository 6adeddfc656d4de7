"""`DocumentStore` on SQLAlchemy 2 (async): SQLite by default, PostgreSQL by URL.

Owns every SQL statement (the tables are in collab.sql_schema). `commit` is
called by the single `UpdateWriter` task, so writes never race each other;
reads run beside it (SQLite in WAL mode never blocks them).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    delete,
    event,
    func,
    insert,
    literal,
    select,
    union_all,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from collab.sql_schema import (
    SNAPSHOT_INFO_COLUMNS,
    documents,
    metadata,
    quarantine,
    server_leases,
    snapshot_info,
    snapshots,
    tombstones,
    updates,
)
from collab.store import (
    AppendUpdate,
    DeleteDocument,
    DeleteSnapshots,
    DocumentInfo,
    PermanentWriteError,
    QuarantineRows,
    SaveSnapshot,
    ServerLease,
    Snapshot,
    SnapshotInfo,
    SnapshotKind,
    StoredDocument,
    WriteOp,
)

logger = logging.getLogger(__name__)


TOUCH_INTERVAL_S = 1.0


def _storable_text(text: str | None) -> str | None:
    """PostgreSQL text cannot hold NUL; a typed "\\0" must not make a write fail."""
    return None if text is None else text.replace("\x00", "\ufffd")


def redact_url(url: str) -> str:
    """The URL as safe to log: the password masked."""
    return make_url(url).render_as_string(hide_password=True)


class SqlStore:
    """One engine, one schema; `commit` is called by a single `UpdateWriter` task."""

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._url = make_url(url)
        self._clock = clock
        # When each document row was last written by a committed transaction: a
        # burst of small commits then skips the UPDATE of `updated_at` (it is
        # refreshed at most once per TOUCH_INTERVAL_S) - a third of their cost.
        self._touched_at: dict[str, float] = {}
        self._txn_touched: dict[str, float | None] = {}
        self._sqlite_synchronous = sqlite_synchronous
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("SqlStore is not open")
        return self._engine

    @property
    def is_sqlite(self) -> bool:
        return self._url.get_backend_name() == "sqlite"

    async def open(self) -> None:
        if self.is_sqlite and self._url.database not in (None, "", ":memory:"):
            Path(self._url.database).parent.mkdir(parents=True, exist_ok=True)
        self._engine = create_async_engine(self._url)
        if self.is_sqlite:
            event.listen(self._engine.sync_engine, "connect", self._set_sqlite_pragmas)
        async with self._engine.begin() as conn:
            await conn.run_sync(metadata.create_all)

    def _set_sqlite_pragmas(self, dbapi_connection: Any, _record: Any) -> None:
        # WAL: readers never block the writer. synchronous=NORMAL in WAL survives a
        # killed process (the commit is in the OS's hands); FULL also survives power
        # loss. foreign_keys makes ON DELETE CASCADE work.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={self._sqlite_synchronous}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.close()

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    async def commit(self, ops: Sequence[WriteOp]) -> list[int | None]:
        try:
            return await self._commit(ops)
        except (DataError, IntegrityError, ProgrammingError) as exc:
            raise PermanentWriteError(str(exc.orig or exc)) from exc

    async def _commit(self, ops: Sequence[WriteOp]) -> list[int | None]:
        now = self._clock()
        results: list[int | None] = []
        self._txn_touched = {}  # this transaction's writes; None: deleted in it
        async with self.engine.begin() as conn:
            pending_rows: list[dict[str, Any]] = []
            for op in ops:
                result = None
                if isinstance(op, AppendUpdate):
                    pending_rows.append(
                        {"document": op.document, "data": op.update, "created_at": now}
                    )
                    results.append(None)
                    continue
                await self._insert_updates(conn, pending_rows, now)
                pending_rows = []
                if isinstance(op, SaveSnapshot):
                    result = await self._save_snapshot(conn, op, now)
                elif isinstance(op, DeleteSnapshots):
                    await self._delete_snapshots(conn, op)
                elif isinstance(op, DeleteDocument):
                    await self._delete_document(conn, op, now)
                elif isinstance(op, QuarantineRows):
                    await self._quarantine(conn, op, now)
                results.append(result)
            await self._insert_updates(conn, pending_rows, now)
        # Committed: only now may the cache believe what this transaction wrote.
        for name, touched_at in self._txn_touched.items():
            if touched_at is None:
                self._touched_at.pop(name, None)
            else:
                self._touched_at[name] = touched_at
        return results

    async def _insert_updates(
        self, conn: AsyncConnection, rows: list[dict[str, Any]], now: float
    ) -> None:
        if not rows:
            return
        # Each document row must exist before its updates (foreign key): once per batch.
        for document in dict.fromkeys(row["document"] for row in rows):
            await self._touch_document(conn, document, now)
        await conn.execute(insert(updates), rows)

    async def _touch_document(self, conn: AsyncConnection, name: str, now: float) -> None:
        if name in self._txn_touched:
            if self._txn_touched[name] is not None:
                return  # already written in this transaction
        elif now - self._touched_at.get(name, -TOUCH_INTERVAL_S) < TOUCH_INTERVAL_S:
            return  # the row exists (a committed transaction wrote it) and is fresh
        self._txn_touched[name] = now
        result = await conn.execute(
            update(documents).where(documents.c.name == name).values(updated_at=now)
        )
        if result.rowcount == 0:
            await conn.execute(insert(documents).values(name=name, created_at=now, updated_at=now))

    async def _save_snapshot(self, conn: AsyncConnection, op: SaveSnapshot, now: float) -> int:
        await self._touch_document(conn, op.document, now)
        covered = await conn.scalar(
            select(func.coalesce(func.max(updates.c.id), 0)).where(
                updates.c.document == op.document
            )
        )
        values = {
            "updated_at": now,
            "size_bytes": len(op.state),
            "preview": _storable_text(op.preview),
            "state": op.state,
            "covers_update_id": covered,
        }
        newest = (
            await conn.execute(
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
            and now - newest.created_at < op.merge_window_s
        ):
            # Still inside the newest automatic version's window: it absorbs this state.
            await conn.execute(update(snapshots).where(snapshots.c.id == newest.id).values(values))
            snapshot_id = int(newest.id)
        else:
            result = await conn.execute(
                insert(snapshots).values(
                    document=op.document,
                    created_at=now,
                    kind=op.kind.value,
                    label=_storable_text(op.label),
                    author=_storable_text(op.author),
                    **values,
                )
            )
            snapshot_id = int(result.inserted_primary_key[0])
        await conn.execute(
            delete(updates).where(updates.c.document == op.document, updates.c.id <= covered)
        )
        return snapshot_id

    async def _delete_document(self, conn: AsyncConnection, op: DeleteDocument, now: float) -> None:
        await conn.execute(delete(documents).where(documents.c.name == op.document))
        await conn.execute(delete(tombstones).where(tombstones.c.name == op.document))
        await conn.execute(
            insert(tombstones).values(name=op.document, state_vector=op.tombstone, deleted_at=now)
        )
        self._txn_touched[op.document] = None

    async def _quarantine(self, conn: AsyncConnection, op: QuarantineRows, now: float) -> None:
        for source, table, ids in (
            ("snapshots", snapshots, op.snapshot_ids),
            ("updates", updates, op.update_ids),
        ):
            if not ids:
                continue
            where = (table.c.document == op.document) & table.c.id.in_(ids)
            rows = (
                await conn.execute(
                    select(
                        table.c.id, table.c.data if source == "updates" else table.c.state
                    ).where(where)
                )
            ).all()
            if rows:
                await conn.execute(
                    insert(quarantine),
                    [
                        {
                            "document": op.document,
                            "source": source,
                            "source_id": row[0],
                            "data": row[1],
                            "reason": _storable_text(op.reason),
                            "quarantined_at": now,
                        }
                        for row in rows
                    ],
                )
            await conn.execute(delete(table).where(where))

    async def quarantined(self, document: str) -> list[tuple[str, int, str]]:
        """(source table, original row id, reason) of the document's quarantined rows."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(quarantine.c.source, quarantine.c.source_id, quarantine.c.reason)
                .where(quarantine.c.document == document)
                .order_by(quarantine.c.id)
            )
            return [(row.source, int(row.source_id), row.reason) for row in rows]

    async def _delete_snapshots(self, conn: AsyncConnection, op: DeleteSnapshots) -> None:
        newest_id = await conn.scalar(
            select(func.max(snapshots.c.id)).where(snapshots.c.document == op.document)
        )
        doomed = [i for i in op.ids if i != newest_id]  # loading needs the newest
        if doomed:
            await conn.execute(
                delete(snapshots).where(
                    snapshots.c.document == op.document, snapshots.c.id.in_(doomed)
                )
            )

    async def list_snapshots(
        self, document: str, *, limit: int | None = None, before_id: int | None = None
    ) -> list[SnapshotInfo]:
        query = (
            select(*SNAPSHOT_INFO_COLUMNS)
            .where(snapshots.c.document == document)
            .order_by(snapshots.c.id.desc())
        )
        if before_id is not None:
            query = query.where(snapshots.c.id < before_id)
        if limit is not None:
            query = query.limit(limit)
        async with self.engine.connect() as conn:
            return [snapshot_info(row) for row in await conn.execute(query)]

    async def get_snapshot(self, document: str, snapshot_id: int) -> Snapshot | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    select(*SNAPSHOT_INFO_COLUMNS, snapshots.c.state).where(
                        snapshots.c.document == document, snapshots.c.id == snapshot_id
                    )
                )
            ).first()
        return Snapshot(snapshot_info(row), row.state) if row else None

    async def documents_with_snapshots(self, kind: SnapshotKind) -> list[str]:
        async with self.engine.connect() as conn:
            result = await conn.execute(
                select(snapshots.c.document).where(snapshots.c.kind == kind.value).distinct()
            )
            return sorted(result.scalars())

    async def save_lease(self, lease: ServerLease) -> None:
        values = {
            "url": lease.url,
            "pid": lease.pid,
            "hostname": lease.hostname,
            "started_at": lease.started_at,
            "heartbeat_at": lease.heartbeat_at,
            "ttl_s": lease.ttl_s,
        }
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(server_leases).where(server_leases.c.id == lease.id).values(values)
            )
            if result.rowcount == 0:
                await conn.execute(insert(server_leases).values(id=lease.id, **values))

    async def drop_lease(self, lease_id: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(server_leases).where(server_leases.c.id == lease_id))

    async def live_leases(self) -> list[ServerLease]:
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(server_leases).where(
                    server_leases.c.heartbeat_at + server_leases.c.ttl_s >= self._clock()
                )
            )
            return [ServerLease(**row._mapping) for row in rows]

    async def load(self, document: str) -> StoredDocument:
        # ONE statement, so the snapshot and the log come from the same moment even
        # if a compaction commits meanwhile (separate SELECTs could pair an old
        # snapshot with a log that no longer holds the entries it lacks).
        latest = (
            select(snapshots.c.id, snapshots.c.covers_update_id)
            .where(snapshots.c.document == document)
            .order_by(snapshots.c.id.desc())
            .limit(1)
            .subquery()
        )
        snapshot_part = select(
            literal(0).label("part"), snapshots.c.id.label("seq"), snapshots.c.state.label("data")
        ).where(snapshots.c.id == select(latest.c.id).scalar_subquery())
        covered = func.coalesce(select(latest.c.covers_update_id).scalar_subquery(), 0)
        log_part = select(
            literal(1).label("part"), updates.c.id.label("seq"), updates.c.data.label("data")
        ).where(updates.c.document == document, updates.c.id > covered)
        tombstone_part = select(
            literal(2).label("part"), literal(0).label("seq"), tombstones.c.state_vector
        ).where(tombstones.c.name == document)
        query = union_all(snapshot_part, log_part, tombstone_part).order_by("part", "seq")
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        has_snapshot = bool(rows) and rows[0].part == 0
        log = [row for row in rows if row.part == 1]
        return StoredDocument(
            snapshot=rows[0].data if has_snapshot else None,
            updates=[row.data for row in log],
            snapshot_id=int(rows[0].seq) if has_snapshot else None,
            update_ids=[int(row.seq) for row in log],
            deleted_state=next((row.data for row in rows if row.part == 2), None),
        )

    async def document_info(self, document: str) -> DocumentInfo | None:
        infos = await self._document_infos(document)
        return infos[0] if infos else None

    async def list_documents(self) -> list[DocumentInfo]:
        return await self._document_infos(None)

    async def _document_infos(self, only: str | None) -> list[DocumentInfo]:
        log_stats = (
            select(
                updates.c.document,
                func.count().label("entries"),
                func.sum(func.length(updates.c.data)).label("log_bytes"),
            )
            .group_by(updates.c.document)
            .subquery()
        )
        latest = (
            select(
                snapshots.c.document,
                func.max(snapshots.c.id).label("latest_id"),
                func.count().label("count"),
            )
            .group_by(snapshots.c.document)
            .subquery()
        )
        latest_snapshot = snapshots.alias("latest_snapshot")
        query = (
            select(
                documents.c.name,
                documents.c.created_at,
                documents.c.updated_at,
                func.coalesce(log_stats.c.entries, 0).label("entries"),
                func.coalesce(log_stats.c.log_bytes, 0).label("log_bytes"),
                func.coalesce(latest.c.count, 0).label("snapshot_count"),
                func.coalesce(latest_snapshot.c.size_bytes, 0).label("snapshot_bytes"),
            )
            .outerjoin(log_stats, log_stats.c.document == documents.c.name)
            .outerjoin(latest, latest.c.document == documents.c.name)
            .outerjoin(latest_snapshot, latest_snapshot.c.id == latest.c.latest_id)
            .order_by(documents.c.name)
        )
        if only is not None:
            query = query.where(documents.c.name == only)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            DocumentInfo(
                name=row.name,
                created_at=row.created_at,
                updated_at=row.updated_at,
                size_bytes=int(row.snapshot_bytes) + int(row.log_bytes),
                log_entries=int(row.entries),
                snapshots=int(row.snapshot_count),
            )
            for row in rows
        ]
