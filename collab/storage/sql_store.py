"""`DocumentStore` on SQLAlchemy 2 (async): SQLite by default, PostgreSQL by URL.

One class for both engines because the SQL is the same; what differs is where a
batch commits (SQLite: collab.storage.sqlite_commit, so small commits skip a
thread hop). What a failed commit means is decided here, once, for both
drivers (`classify_write_error`), whether the error came through SQLAlchemy or
straight from the sqlite3 driver on SQLite's hot path. The SQL of each write op
is in collab.storage.sql_writes, the tables in collab.storage.sql_schema, the
schema upgrades in collab.storage.migrate.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from collab.errors import MissingDriver
from collab.metrics import Metrics
from collab.storage.attribution import EditSession
from collab.storage.migrate import SchemaVersion, schema_version, upgrade_database
from collab.storage.sql_attribution import read_owners, session_of, sessions_query
from collab.storage.sql_load import SqliteLoads, load_on
from collab.storage.sql_schema import (
    SNAPSHOT_INFO_COLUMNS,
    documents,
    quarantine,
    server_leases,
    snapshot_info,
    snapshots,
    token_revocations,
    updates,
)
from collab.storage.sql_write_errors import classify_write_error
from collab.storage.sql_writes import BatchOutcome, run_batch
from collab.storage.sqlite_commit import SqliteCommitter
from collab.storage.store import (
    DocumentInfo,
    OpDeclined,
    RevocationRecord,
    ServerLease,
    Snapshot,
    SnapshotInfo,
    SnapshotKind,
    StoredDocument,
    WriteOp,
)
from collab.storage.touch_cache import TouchCache


class SqlStore:
    """The `DocumentStore` on one SQL database (SQLite or PostgreSQL).

    Owns the async engine (reads, leases, migrations), SQLite's commit path
    (`SqliteCommitter`, None on PostgreSQL and in-memory databases) and the one
    cache of the write path (`TouchCache`).

    Invariants: `commit` is called by one writer per process, one batch at a time,
    so this process's writes never race each other; other processes may write the
    same database beside it (a cluster), which the write SQL is built for. Reads
    run beside commits (SQLite in WAL mode never blocks them). The cache believes
    only what a committed transaction wrote.

    Never: retry a commit (one attempt; what failed is said by the exception, and
    the writer decides), hold a write in memory, or call back into the layers
    above it.
    """

    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
        metrics: Metrics | None = None,
    ) -> None:
        self._url = make_url(url)
        self._metrics = metrics
        self._clock = clock
        self._touches = TouchCache()
        self.schema: SchemaVersion | None = None
        self._sqlite_synchronous = sqlite_synchronous
        self._engine: AsyncEngine | None = None
        # SQLite's write path (see collab.storage.sqlite_commit); None on PostgreSQL.
        self._sqlite_writes: SqliteCommitter | None = None
        # SQLite's loads, on threads of their own (collab.storage.sql_load).
        self._sqlite_loads: SqliteLoads | None = None
        # Set once a commit of this process recorded outbox events: the events
        # task (collab.webhooks.dispatcher) waits on it and clears it, so an event
        # goes out at once rather than at its next poll. A signal, not a call:
        # the store calls nothing above it.
        self.events_committed = asyncio.Event()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("SqlStore is not open")
        return self._engine

    @property
    def sqlite_writes(self) -> SqliteCommitter | None:
        """SQLite's write path (which batches ran inline, which on the commit
        thread); None on PostgreSQL or an in-memory database."""
        return self._sqlite_writes

    @property
    def is_sqlite(self) -> bool:
        return self._url.get_backend_name() == "sqlite"

    async def open(self, *, migrate: bool = True) -> None:
        """Connect, and (unless `migrate` is False) upgrade the schema to head."""
        database = self._url.database
        is_file = self.is_sqlite and database not in (None, "", ":memory:")
        if is_file and database:
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._engine = create_async_engine(self._url)
        except ModuleNotFoundError as exc:  # an optional extra: SQLite needs none
            if (exc.name or "").partition(".")[0] != "asyncpg":
                raise
            raise MissingDriver(
                "a PostgreSQL URL (postgresql+asyncpg://)", "asyncpg", "postgres"
            ) from exc
        if self.is_sqlite:
            event.listen(self._engine.sync_engine, "connect", self._set_sqlite_pragmas)
            if is_file:
                # Writes go through the standard library's sqlite3 driver, on the
                # loop or on the commit thread; loads on threads of their own
                # (collab.storage.sql_load); other reads stay on aiosqlite.
                write_engine = create_engine(self._url.set(drivername="sqlite"))
                event.listen(write_engine, "connect", self._set_sqlite_pragmas)
                self._sqlite_writes = SqliteCommitter(
                    write_engine,
                    # With FULL or EXTRA every commit fsyncs: never on the loop.
                    is_inline_allowed=self._sqlite_synchronous.upper() in ("OFF", "NORMAL"),
                    commits=None if self._metrics is None else self._metrics.sqlite_commits,
                )
                # Loads too: one hand-off to a thread per load, not one per step.
                read_engine = create_engine(self._url.set(drivername="sqlite"))
                event.listen(read_engine, "connect", self._set_sqlite_pragmas)
                self._sqlite_loads = SqliteLoads(read_engine)
        if migrate:
            self.schema = await upgrade_database(self._engine)

    async def schema_version(self) -> SchemaVersion:
        return await schema_version(self.engine)

    def _set_sqlite_pragmas(self, dbapi_connection: Any, _record: Any) -> None:
        # WAL: reads and commits never block each other. synchronous=NORMAL in WAL
        # survives a killed process (the commit is in the OS's hands); FULL also
        # survives power loss. foreign_keys makes ON DELETE CASCADE work.
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
        if self._sqlite_writes is not None:
            sqlite_writes, self._sqlite_writes = self._sqlite_writes, None
            await sqlite_writes.close()
        if self._sqlite_loads is not None:
            sqlite_loads, self._sqlite_loads = self._sqlite_loads, None
            await sqlite_loads.close()

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(select(1))

    async def commit(self, ops: Sequence[WriteOp]) -> list[int | OpDeclined | None]:
        """One attempt at committing `ops` in one transaction (see `DocumentStore`)."""
        try:
            outcome = await self._commit(ops)
        except (DBAPIError, sqlite3.Error) as exc:
            classified = classify_write_error(exc)
            if classified is None:
                raise  # an outage: the writer retries
            raise classified from exc
        # Committed: only now may the cache believe what this transaction wrote.
        self._touches.note_committed(outcome.touched)
        if outcome.events_recorded:
            self.events_committed.set()
        return outcome.results

    async def _commit(self, ops: Sequence[WriteOp]) -> BatchOutcome:
        now = self._clock()
        if self._sqlite_writes is not None:
            return await self._sqlite_writes.commit(ops, now, self._touches)
        async with self.engine.begin() as conn:
            return await conn.run_sync(run_batch, ops, now, self._touches)

    async def quarantined(self, document: str) -> list[tuple[str, int, str]]:
        """(source table, original row id, reason) of the document's quarantined rows."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(quarantine.c.source, quarantine.c.source_id, quarantine.c.reason)
                .where(quarantine.c.document == document)
                .order_by(quarantine.c.id)
            )
            return [(row.source, int(row.source_id), row.reason) for row in rows]

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

    async def list_sessions(
        self,
        document: str,
        *,
        since: float | None = None,
        until: float | None = None,
        subject: str | None = None,
        limit: int | None = None,
    ) -> list[EditSession]:
        query = sessions_query(document, since=since, until=until, subject=subject, limit=limit)
        async with self.engine.connect() as conn:
            return [session_of(row) for row in await conn.execute(query)]

    async def load_owners(self, document: str) -> dict[int, str]:
        async with self.engine.connect() as conn:
            return await read_owners(conn, document)

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
            "cluster": lease.cluster,
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

    async def add_revocation(self, revocation: RevocationRecord) -> None:
        lapsed = token_revocations.c.until <= self._clock()
        async with self.engine.begin() as conn:
            await conn.execute(delete(token_revocations).where(lapsed))
            await conn.execute(
                insert(token_revocations).values(
                    kind=revocation.kind,
                    value=revocation.value,
                    revoked_at=revocation.revoked_at,
                    until=revocation.until,
                    reason=revocation.reason,
                    revoked_by=revocation.revoked_by,
                )
            )

    async def list_revocations(self) -> list[RevocationRecord]:
        columns = token_revocations.c
        in_force = (columns.until.is_(None)) | (columns.until > self._clock())
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    columns.kind,
                    columns.value,
                    columns.revoked_at,
                    columns.until,
                    columns.reason,
                    columns.revoked_by,
                )
                .where(in_force)
                .order_by(columns.id)
            )
            return [RevocationRecord(**row._mapping) for row in rows]

    async def load(self, document: str) -> StoredDocument:
        if self._sqlite_loads is not None:
            return await self._sqlite_loads.load(document)
        async with self.engine.connect() as conn:
            return await load_on(conn, document)

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
