"""Where a SQLite write batch runs: on the event loop's own thread, or on the commit thread.

Why two places: handing a batch to a thread (the executor, a thread wake-up, the
GIL hand-off, the loop's self-pipe on the way back) costs several times the CPU
of committing a small append-only batch, which in WAL mode with
synchronous=NORMAL is one write() to the WAL and no fsync. Under steady small
edits every update is its own commit, so that hop would dominate the server's
CPU (bench/RESULTS.md has the measurements). Small append-only batches therefore
commit inline; snapshots, deletes, big batches, and anything that would have to
wait for a lock go to the commit thread.

What keeps the loop from ever waiting on the disk or on a lock:
- the inline connection has busy_timeout=0: if another connection holds the
  write lock (the lease heartbeat's transaction does, briefly, and it needs this
  very loop to finish), the attempt fails at once, having written nothing, and
  the batch goes to the commit thread, which may wait. That is a choice of
  path, not a retry: retrying failed commits is the writer's alone;
- it never checkpoints (wal_autocheckpoint=0): after `checkpoint_every` inline
  commits the next batch goes to the commit thread, which checkpoints after
  committing it, so copying WAL pages into the database, and its fsyncs, happen
  off the loop.

Durability is the same on both paths: a commit returns once the WAL holds it,
which survives a killed process (synchronous=FULL also survives power loss and
then always takes the commit thread, since every commit fsyncs).

Every batch begins with BEGIN IMMEDIATE: it holds the database's write lock
from its first statement, so what it reads first (the incarnation of the
documents it appends to, see collab.storage.sql_writes) cannot change before
it writes - another process sharing the file waits, as it would for any write.
Errors go up as the driver raised them; collab.storage.sql_store classifies
them (raw sqlite3 errors included).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import Counter
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from collab.storage.sql_writes import BatchOutcome, TouchCache, run_batch
from collab.storage.store import AppendUpdate, WriteOp

logger = logging.getLogger(__name__)

_SQLITE_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


class SqliteCommitter:
    """Commits batches on one SQLite database file, inline or on the commit thread.

    Owns two connections of the standard library's sqlite3 driver - one used only
    on the loop (inline commits), one used only on the commit thread - and the
    count of inline commits since the last checkpoint. Invariants: the inline
    path never waits (no busy wait, no checkpoint, no fsync); one batch at a time
    (its caller is the store, called by the process's one writer). It never
    retries a batch that failed: the error goes up, to the writer.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        is_inline_allowed: bool = True,
        inline_max_bytes: int = 64 * 1024,
        checkpoint_every: int = 256,
        commits: Counter | None = None,
    ) -> None:
        self._engine = engine
        self._is_inline_allowed = is_inline_allowed
        self._inline_max_bytes = inline_max_bytes
        self._checkpoint_every = checkpoint_every
        self._commit_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-commit")
        self._thread_conn: Connection | None = None  # used on the commit thread only
        self._inline_conn: Connection | None = None  # used on the loop only
        self._inline_since_checkpoint = 0
        commits = commits or Counter("sqlite_commits", "", ["path"], registry=None)
        self._inline_commits = commits.labels("inline")
        self._thread_commits = commits.labels("thread")

    async def commit(self, ops: Sequence[WriteOp], now: float, touches: TouchCache) -> BatchOutcome:
        """Run `ops` in one transaction and commit it; what it did."""
        if self._inline_since_checkpoint < self._checkpoint_every and self._fits_inline(ops):
            try:
                outcome = self._commit_inline(ops, now, touches)
            except (OperationalError, sqlite3.OperationalError) as exc:
                if not _is_busy(exc):
                    raise
                logger.debug("database busy: %d ops go to the commit thread", len(ops))
            else:
                self._inline_commits.inc()
                self._inline_since_checkpoint += 1
                return outcome
        loop = asyncio.get_running_loop()
        outcome = await loop.run_in_executor(
            self._commit_thread,
            self._commit_on_thread,
            ops,
            now,
            touches,
            self._inline_since_checkpoint > 0,
        )
        self._thread_commits.inc()
        self._inline_since_checkpoint = 0
        return outcome

    def _fits_inline(self, ops: Sequence[WriteOp]) -> bool:
        if not self._is_inline_allowed:
            return False
        size = 0
        for op in ops:
            if type(op) is not AppendUpdate:
                return False
            size += len(op.update)
        return size <= self._inline_max_bytes

    def _commit_inline(
        self, ops: Sequence[WriteOp], now: float, touches: TouchCache
    ) -> BatchOutcome:
        if self._inline_conn is None or self._inline_conn.invalidated:
            self._inline_conn = self._engine.connect()
            driver = _driver(self._inline_conn)
            driver.execute("PRAGMA busy_timeout=0")
            driver.execute("PRAGMA wal_autocheckpoint=0")
        with self._inline_conn.begin():
            _begin_immediate(self._inline_conn)
            return run_batch(self._inline_conn, ops, now, touches)

    def _thread_connection(self) -> Connection:
        if self._thread_conn is None or self._thread_conn.invalidated:
            # One connection for the thread's life: no pool checkout per batch.
            self._thread_conn = self._engine.connect()
        return self._thread_conn

    def _commit_on_thread(
        self, ops: Sequence[WriteOp], now: float, touches: TouchCache, is_checkpoint_due: bool
    ) -> BatchOutcome:
        conn = self._thread_connection()
        with conn.begin():
            _begin_immediate(conn)
            outcome = run_batch(conn, ops, now, touches)
        if is_checkpoint_due:
            # Nothing else writes until this returns (one writer), so the
            # checkpoint can copy the whole WAL and SQLite starts it over; one that
            # runs beside a steady stream of commits never catches up and the WAL
            # only grows.
            _driver(conn).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        return outcome

    async def close(self) -> None:
        if self._inline_conn is not None:
            self._inline_conn.close()
            self._inline_conn = None
        await asyncio.get_running_loop().run_in_executor(self._commit_thread, self._close_on_thread)
        self._commit_thread.shutdown(wait=False)

    def _close_on_thread(self) -> None:
        if self._thread_conn is not None:
            # Fold the WAL into the database file while nothing writes any more.
            _driver(self._thread_conn).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._thread_conn.close()
            self._thread_conn = None
        self._engine.dispose()


def _begin_immediate(conn: Connection) -> None:
    """Take the write lock now (the driver would begin a deferred transaction at
    the first write, after the batch's first reads)."""
    _driver(conn).execute("BEGIN IMMEDIATE")


def _driver(conn: Connection) -> sqlite3.Connection:
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


def _is_busy(exc: Exception) -> bool:
    """Another connection holds the lock (the raw driver's error or SQLAlchemy's)."""
    error = exc.orig if isinstance(exc, OperationalError) else exc
    return getattr(error, "sqlite_errorcode", None) in _SQLITE_BUSY_CODES
