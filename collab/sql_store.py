"""`DocumentStore` on SQLAlchemy 2 (async): SQLite by default, PostgreSQL by URL.

Owns the schema and every SQL statement. The only module that imports
SQLAlchemy. Schema:

    documents(name PK, created_at, updated_at)
    updates(id, document, data, created_at)          -- the append-only log
    snapshots(id, document, created_at, kind, label, author,
              size_bytes, preview, state, covers_update_id)

`updates.id` is the log's sequence number: strictly increasing and never reused
(SQLite AUTOINCREMENT, a PostgreSQL identity), so "entries after a snapshot" is
`id > snapshots.covers_update_id` even after compaction deleted the newest rows.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from collab.store import (
    AppendUpdate,
    DeleteDocument,
    DocumentInfo,
    SaveSnapshot,
    StoredDocument,
    WriteOp,
)

logger = logging.getLogger(__name__)

_Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

documents = Table(
    "documents",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

updates = Table(
    "updates",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column(
        "document",
        String(128),
        ForeignKey("documents.name", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_updates_document_id", "document", "id"),
    sqlite_autoincrement=True,
)

snapshots = Table(
    "snapshots",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column(
        "document",
        String(128),
        ForeignKey("documents.name", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("created_at", Float, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("label", Text),
    Column("author", Text),
    Column("size_bytes", BigInteger, nullable=False),
    Column("preview", Text, nullable=False),
    Column("state", LargeBinary, nullable=False),
    Column("covers_update_id", BigInteger, nullable=False),
    Index("ix_snapshots_document_id", "document", "id"),
    sqlite_autoincrement=True,
)


def redact_url(url: str) -> str:
    """The URL as safe to log: the password masked."""
    return make_url(url).render_as_string(hide_password=True)


class SqlStore:
    """One engine, one schema; `commit` is called by a single `UpdateWriter` task."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self._url = make_url(url)
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

    async def commit(self, ops: Sequence[WriteOp]) -> None:
        now = time.time()
        async with self.engine.begin() as conn:
            pending_rows: list[dict[str, Any]] = []
            for op in ops:
                if isinstance(op, AppendUpdate):
                    pending_rows.append(
                        {"document": op.document, "data": op.update, "created_at": now}
                    )
                    continue
                await self._insert_updates(conn, pending_rows, now)
                pending_rows = []
                if isinstance(op, SaveSnapshot):
                    await self._save_snapshot(conn, op, now)
                elif isinstance(op, DeleteDocument):
                    await conn.execute(delete(documents).where(documents.c.name == op.document))
            await self._insert_updates(conn, pending_rows, now)

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
        result = await conn.execute(
            update(documents).where(documents.c.name == name).values(updated_at=now)
        )
        if result.rowcount == 0:
            await conn.execute(insert(documents).values(name=name, created_at=now, updated_at=now))

    async def _save_snapshot(self, conn: AsyncConnection, op: SaveSnapshot, now: float) -> None:
        await self._touch_document(conn, op.document, now)
        covered = await conn.scalar(
            select(func.coalesce(func.max(updates.c.id), 0)).where(
                updates.c.document == op.document
            )
        )
        await conn.execute(
            insert(snapshots).values(
                document=op.document,
                created_at=now,
                kind=op.kind,
                label=op.label,
                author=op.author,
                size_bytes=len(op.state),
                preview=op.preview,
                state=op.state,
                covers_update_id=covered,
            )
        )
        await conn.execute(
            delete(updates).where(updates.c.document == op.document, updates.c.id <= covered)
        )

    async def load(self, document: str) -> StoredDocument:
        async with self.engine.connect() as conn:
            snapshot = (
                await conn.execute(
                    select(snapshots.c.state, snapshots.c.covers_update_id)
                    .where(snapshots.c.document == document)
                    .order_by(snapshots.c.id.desc())
                    .limit(1)
                )
            ).first()
            covered = snapshot.covers_update_id if snapshot else 0
            log = await conn.execute(
                select(updates.c.data)
                .where(updates.c.document == document, updates.c.id > covered)
                .order_by(updates.c.id)
            )
            return StoredDocument(
                snapshot=snapshot.state if snapshot else None,
                updates=[row.data for row in log],
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
