"""Reading one document's stored rows: the load statement, and SQLite's read thread.

The statement is built once per process with the document as a bound
parameter: building it per load (a union of five selects) and computing its
cache key cost more CPU than SQLite spends running it.

`SqliteLoads` runs a whole load (the rows, then the owners) on a thread of its
own, straight on the standard library's sqlite3 driver (the statements compiled
for it once): one hand-off to the thread and
one back per load. Through aiosqlite each step of a load (the pool checkout,
each statement, each fetch, the reset on return) is its own hand-off to the
connection's thread and back through the loop, and a server that is loading
many documents at once (every first join after a restart) spends most of its
CPU on those. Reads in WAL mode never wait for a writer, so a load never waits
for a commit either.

Never writes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import BindParameter, String, bindparam, func, literal, null, select, union_all
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.types import LargeBinary

from collab.storage.sql_schema import client_authors, documents, snapshots, tombstones, updates
from collab.storage.sqlite_forms import SqliteForm
from collab.storage.store import StoredDocument

_DOCUMENT: BindParameter[str] = bindparam("document", type_=String())


def _load_statement() -> Any:
    # ONE statement, so the snapshot, the log and the snapshot sequence come
    # from the same moment even if a compaction commits meanwhile (separate
    # SELECTs could pair an old snapshot with a log that lost rows it lacks).
    newest_id = (
        select(func.max(snapshots.c.id)).where(snapshots.c.document == _DOCUMENT).scalar_subquery()
    )
    snapshot_part = select(
        literal(0).label("part"), snapshots.c.id.label("seq"), snapshots.c.state.label("data")
    ).where(snapshots.c.id == newest_id)
    log_part = select(literal(1), updates.c.id, updates.c.data).where(
        updates.c.document == _DOCUMENT
    )
    no_data = null().cast(LargeBinary)
    tombstone_part = select(literal(2), tombstones.c.deletions, tombstones.c.state_vector).where(
        tombstones.c.name == _DOCUMENT
    )
    seq_part = select(literal(3), documents.c.snapshot_seq, no_data).where(
        documents.c.name == _DOCUMENT
    )
    incarnation_part = select(literal(4), documents.c.incarnation, no_data).where(
        documents.c.name == _DOCUMENT
    )
    return union_all(snapshot_part, log_part, tombstone_part, seq_part, incarnation_part).order_by(
        "part", "seq"
    )


LOAD_ROWS = _load_statement()
LOAD_OWNERS = select(client_authors.c.client_id, client_authors.c.subject).where(
    client_authors.c.document == _DOCUMENT
)


def stored_document(rows: Sequence[Any], owner_rows: Sequence[Any]) -> StoredDocument:
    """What `LOAD_ROWS` (part, seq, data) and `LOAD_OWNERS` (client id, subject)
    returned, as SQLAlchemy rows or the driver's tuples, as a `StoredDocument`."""
    has_snapshot = bool(rows) and rows[0][0] == 0
    log = [row for row in rows if row[0] == 1]
    tombstone = next((row for row in rows if row[0] == 2), None)
    # The row's incarnation; with no row, the one the next row will have.
    deletions = 0 if tombstone is None else int(tombstone[1])
    return StoredDocument(
        snapshot=rows[0][2] if has_snapshot else None,
        updates=[row[2] for row in log],
        snapshot_id=int(rows[0][1]) if has_snapshot else None,
        row_ids=[int(row[1]) for row in log],
        tombstone=None if tombstone is None else tombstone[2],
        snapshot_seq=next((int(row[1]) for row in rows if row[0] == 3), 0),
        incarnation=next((int(row[1]) for row in rows if row[0] == 4), deletions),
        owners={int(client_id): subject for client_id, subject in owner_rows},
    )


async def load_on(conn: AsyncConnection, document: str) -> StoredDocument:
    """A load through the async engine (PostgreSQL, an in-memory SQLite)."""
    params = {"document": document}
    rows = (await conn.execute(LOAD_ROWS, params)).all()
    owner_rows = (await conn.execute(LOAD_OWNERS, params)).all()
    return stored_document(rows, owner_rows)


# The same for SQLite's driver (`SqliteLoads`).
_ROWS = SqliteForm(LOAD_ROWS, [_DOCUMENT.key])
_OWNERS = SqliteForm(LOAD_OWNERS, [_DOCUMENT.key])


class SqliteLoads:
    """Loads documents from one SQLite file on threads of their own (see above).

    Owns its engine (a pool of sqlite3 connections) and its threads; a few loads
    run at once, so one big document does not hold up the others."""

    def __init__(self, engine: Engine, *, threads: int = 4) -> None:
        self._engine = engine
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="sqlite-load")

    async def load(self, document: str) -> StoredDocument:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._threads, self._load, document)

    def _load(self, document: str) -> StoredDocument:
        # Straight to the driver: SQLAlchemy's execution of the two statements
        # cost ~120 us of the GIL per load, SQLite's own work ~10 us.
        conn = self._engine.raw_connection()
        try:
            driver = conn.driver_connection
            assert driver is not None
            rows = _ROWS.run(driver, document).fetchall()
            owner_rows = _OWNERS.run(driver, document).fetchall()
        finally:
            conn.close()  # back to the pool
        return stored_document(rows, owner_rows)

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self._close)

    def _close(self) -> None:
        self._threads.shutdown(wait=True)
        self._engine.dispose()
