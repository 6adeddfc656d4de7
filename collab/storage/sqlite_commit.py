"""Where a SQLite write batch runs: on the event loop's own thread, or on the writer thread.

Why two places: handing a batch to a thread costs about 100 µs of CPU (the
executor, a futex wake-up, the GIL hand-off, the loop's self-pipe on the way
back), while committing a small append-only batch costs about 30 µs: in WAL mode
with synchronous=NORMAL a commit is one write() to the WAL, no fsync. Under
steady small edits every update is its own commit, so that hop was a quarter of
the server's CPU. Small append-only batches therefore commit inline; snapshots,
deletes, big batches, and anything that would have to wait for a lock go to the
thread.

What keeps the loop from ever waiting on the disk or on a lock:
- the inline connection has busy_timeout=0: if another connection holds the
  write lock (the lease heartbeat's transaction does, briefly, and it needs this
  very loop to finish), the attempt fails at once and the batch goes to the
  thread, which may wait;
- it never checkpoints (wal_autocheckpoint=0): after `checkpoint_every` inline
  commits the next batch goes to the thread, which checkpoints after committing
  it, so copying WAL pages into the database, and its fsyncs, happen off the loop.

Durability is the same on both paths: a commit returns once the WAL holds it,
which survives a killed process (synchronous=FULL also survives power loss and
then always takes the thread, since every commit fsyncs).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Generic, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from collab.storage.store import AppendUpdate, WriteOp

logger = logging.getLogger(__name__)

Result = TypeVar("Result")
# Runs the ops on an open transaction of the given connection, at time `now`.
BatchRunner = Callable[[Connection, Sequence[WriteOp], float], Result]

_SQLITE_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


class SqliteCommitter(Generic[Result]):
    """Commits batches on one SQLite database for the process's single writer task."""

    def __init__(
        self,
        engine: Engine,
        run: BatchRunner[Result],
        *,
        is_inline_allowed: bool = True,
        inline_max_bytes: int = 64 * 1024,
        checkpoint_every: int = 256,
    ) -> None:
        self._engine = engine
        self._run = run
        self._is_inline_allowed = is_inline_allowed
        self._inline_max_bytes = inline_max_bytes
        self._checkpoint_every = checkpoint_every
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self._thread_conn: Connection | None = None  # used on the thread only
        self._inline_conn: Connection | None = None  # used on the loop only
        self._inline_since_checkpoint = 0
        self.inline_commits = 0  # for introspection and tests
        self.thread_commits = 0

    async def commit(self, ops: Sequence[WriteOp], now: float) -> Result:
        if self._inline_since_checkpoint < self._checkpoint_every and self._fits_inline(ops):
            try:
                result = self._commit_inline(ops, now)
            except (OperationalError, sqlite3.OperationalError) as exc:
                if not _is_busy(exc):
                    raise
                logger.debug("database busy: %d ops go to the writer thread", len(ops))
            else:
                self.inline_commits += 1
                self._inline_since_checkpoint += 1
                return result
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self._thread, self._commit_on_thread, ops, now, self._inline_since_checkpoint > 0
        )
        self.thread_commits += 1
        self._inline_since_checkpoint = 0
        return result

    def _fits_inline(self, ops: Sequence[WriteOp]) -> bool:
        if not self._is_inline_allowed:
            return False
        size = 0
        for op in ops:
            if type(op) is not AppendUpdate:
                return False
            size += len(op.update)
        return size <= self._inline_max_bytes

    def _commit_inline(self, ops: Sequence[WriteOp], now: float) -> Result:
        if self._inline_conn is None or self._inline_conn.invalidated:
            self._inline_conn = self._engine.connect()
            driver = _driver(self._inline_conn)
            driver.execute("PRAGMA busy_timeout=0")
            driver.execute("PRAGMA wal_autocheckpoint=0")
        with self._inline_conn.begin():
            return self._run(self._inline_conn, ops, now)

    def _thread_connection(self) -> Connection:
        if self._thread_conn is None or self._thread_conn.invalidated:
            # One connection for the thread's life: no pool checkout per batch.
            self._thread_conn = self._engine.connect()
        return self._thread_conn

    def _commit_on_thread(
        self, ops: Sequence[WriteOp], now: float, is_checkpoint_due: bool
    ) -> Result:
        conn = self._thread_connection()
        with conn.begin():
            result = self._run(conn, ops, now)
        if is_checkpoint_due:
            # Nothing else writes until this returns (one writer task), so the
            # checkpoint can copy the whole WAL and SQLite starts it over; one that
            # runs beside a steady writer never catches up and the WAL only grows.
            _driver(conn).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return result

    async def close(self) -> None:
        if self._inline_conn is not None:
            self._inline_conn.close()
            self._inline_conn = None
        await asyncio.get_running_loop().run_in_executor(self._thread, self._close_on_thread)
        self._thread.shutdown(wait=False)

    def _close_on_thread(self) -> None:
        if self._thread_conn is not None:
            # Fold the WAL into the database file while nothing writes any more.
            _driver(self._thread_conn).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._thread_conn.close()
            self._thread_conn = None
        self._engine.dispose()


def _driver(conn: Connection) -> sqlite3.Connection:
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


def _is_busy(exc: Exception) -> bool:
    """Another connection holds the lock (the raw driver's error or SQLAlchemy's)."""
    error = exc.orig if isinstance(exc, OperationalError) else exc
    return getattr(error, "sqlite_errorcode", None) in _SQLITE_BUSY_CODES
