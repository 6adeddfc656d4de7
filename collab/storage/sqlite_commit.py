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
- no connection that commits ever checkpoints by itself (wal_autocheckpoint=0).

Checkpoints, and why in two steps: copying the WAL's pages into the database
(and its fsyncs) is the slow part, several ms for a few hundred commits, and
while the writer waits for it every edit of every room waits too (it set the
fan-out's p99: bench/RESULTS.md). So after `checkpoint_every` commits a PASSIVE
checkpoint runs on its own thread and connection BESIDE the commits, which go on
meanwhile. It cannot finish the job alone: SQLite starts the WAL over only when
a write begins with every frame copied, and under steady edits frames keep
arriving while it copies. So once the WAL holds `restart_wal_frames` frames, the
next batch after a checkpoint beside goes to the commit thread and checkpoints
right after committing (the writer waits for that one, a few ms): it copies only
what arrived meanwhile, and the write after it starts the WAL over. The WAL
stays bounded (about `restart_wal_frames` pages plus what arrives during one
checkpoint), and the writer waits for a checkpoint rarely, and never for the
bulk of the copying.

Durability is the same on every path: a commit returns once the WAL holds it,
which survives a killed process (synchronous=FULL also survives power loss and
then always takes the commit thread, since every commit fsyncs). A checkpoint
only copies what is committed already.

Every batch begins with BEGIN IMMEDIATE: it holds the database's write lock
from its first statement, so what it reads first (the incarnation of the
documents it appends to, see collab.storage.sql_writes) cannot change before
it writes - another process sharing the file waits, as it would for any write.
Errors go up as the driver raised them; collab.storage.sql_write_errors classifies
them (raw sqlite3 errors included).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from prometheus_client import Counter
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from collab.storage.sql_writes import BatchOutcome, run_batch
from collab.storage.store import AppendUpdate, WriteOp
from collab.storage.touch_cache import TouchCache

logger = logging.getLogger(__name__)

_SQLITE_BUSY_CODES = {sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED}


class SqliteCommitter:
    """Commits batches on one SQLite database file, inline or on the commit thread,
    and checkpoints its WAL beside them.

    Owns three connections of the standard library's sqlite3 driver - one used
    only on the loop (inline commits), one only on the commit thread, one only on
    the checkpoint thread - the count of commits since the last checkpoint began,
    and the checkpoint running beside the commits (at most one). Invariants: the
    inline path never waits (no busy wait, no checkpoint, no fsync); one batch at
    a time (its caller is the store, called by the process's one writer). It
    never retries a batch that failed: the error goes up, to the writer. A
    checkpoint that fails is logged and tried again at the next one due: it
    loses nothing, the WAL only stays longer.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        is_inline_allowed: bool = True,
        inline_max_bytes: int = 64 * 1024,
        checkpoint_every: int = 256,
        restart_wal_frames: int = 8192,
        commits: Counter | None = None,
    ) -> None:
        self._engine = engine
        self._is_inline_allowed = is_inline_allowed
        self._inline_max_bytes = inline_max_bytes
        self._checkpoint_every = checkpoint_every
        self._restart_wal_frames = restart_wal_frames
        self._commit_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-commit")
        self._checkpoint_thread = ThreadPoolExecutor(1, thread_name_prefix="sqlite-checkpoint")
        self._thread_conn: Connection | None = None  # used on the commit thread only
        self._checkpoint_conn: Connection | None = None  # the checkpoint thread only
        self._inline_conn: Connection | None = None  # used on the loop only
        self._since_checkpoint = 0  # commits since the last checkpoint began
        # The checkpoint beside the commits; it resolves to the WAL's frames.
        self._beside: asyncio.Future[int] | None = None
        self._is_catch_up_due = False  # the next batch finishes a checkpoint
        commits = commits or Counter("sqlite_commits", "", ["path"], registry=None)
        self._inline_commits = commits.labels("inline")
        self._thread_commits = commits.labels("thread")

    async def commit(self, ops: Sequence[WriteOp], now: float, touches: TouchCache) -> BatchOutcome:
        """Run `ops` in one transaction and commit it; what it did."""
        self._since_checkpoint += 1
        if self._since_checkpoint > self._checkpoint_every and self._beside is None:
            self._start_checkpoint_beside()
        if not self._is_catch_up_due and self._fits_inline(ops):
            try:
                outcome = self._commit_inline(ops, now, touches)
            except (OperationalError, sqlite3.OperationalError) as exc:
                if not _is_busy(exc):
                    raise
                logger.debug("database busy: %d ops go to the commit thread", len(ops))
            else:
                self._inline_commits.inc()
                return outcome
        is_catch_up = self._is_catch_up_due
        outcome = await asyncio.get_running_loop().run_in_executor(
            self._commit_thread, self._commit_on_thread, ops, now, touches, is_catch_up
        )
        self._thread_commits.inc()
        if is_catch_up:
            self._is_catch_up_due = False
        return outcome

    def _start_checkpoint_beside(self) -> None:
        self._since_checkpoint = 0
        loop = asyncio.get_running_loop()
        beside = loop.run_in_executor(self._checkpoint_thread, self._checkpoint_on_thread)
        self._beside = beside
        beside.add_done_callback(self._checkpoint_ended)

    def _checkpoint_ended(self, beside: asyncio.Future[int]) -> None:
        self._beside = None
        if beside.cancelled():
            return
        exc = beside.exception()
        if exc is not None:
            # Nothing is lost: committed frames stay in the WAL until a later one.
            logger.warning("WAL checkpoint failed (retried at the next one due): %r", exc)
            return
        self._is_catch_up_due = beside.result() >= self._restart_wal_frames

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
            self._inline_conn = self._connect()
            _driver(self._inline_conn).execute("PRAGMA busy_timeout=0")
        return _run_in_transaction(self._inline_conn, ops, now, touches)

    def _connect(self) -> Connection:
        """A connection for one thread's life (no pool checkout per batch) that
        never checkpoints by itself: checkpoints are this class's to place."""
        conn = self._engine.connect()
        _driver(conn).execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def _commit_on_thread(
        self, ops: Sequence[WriteOp], now: float, touches: TouchCache, is_catch_up: bool
    ) -> BatchOutcome:
        if self._thread_conn is None or self._thread_conn.invalidated:
            self._thread_conn = self._connect()
        conn = self._thread_conn
        outcome = _run_in_transaction(conn, ops, now, touches)
        if is_catch_up:
            # Nothing else writes until this returns (one writer): this copies the
            # frames committed while the checkpoint beside ran, and with every
            # frame copied the next write starts the WAL over. The batch is
            # committed already: a failure here must not make the writer run it
            # again.
            try:
                _checkpoint(conn)
            except sqlite3.Error as exc:
                logger.warning("WAL checkpoint failed (retried at the next one due): %r", exc)
        return outcome

    def _checkpoint_on_thread(self) -> int:
        if self._checkpoint_conn is None or self._checkpoint_conn.invalidated:
            self._checkpoint_conn = self._connect()
        return _checkpoint(self._checkpoint_conn)

    async def close(self) -> None:
        if self._beside is not None:
            with contextlib.suppress(Exception):  # logged by `_checkpoint_ended`
                await self._beside
        if self._inline_conn is not None:
            self._inline_conn.close()
            self._inline_conn = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._checkpoint_thread, self._close_checkpoint_conn)
        self._checkpoint_thread.shutdown(wait=False)
        await loop.run_in_executor(self._commit_thread, self._close_on_thread)
        self._commit_thread.shutdown(wait=False)

    def _close_checkpoint_conn(self) -> None:
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None

    def _close_on_thread(self) -> None:
        if self._thread_conn is not None:
            # Fold the WAL into the database file while nothing writes any more.
            _checkpoint(self._thread_conn)
            self._thread_conn.close()
            self._thread_conn = None
        self._engine.dispose()


def _checkpoint(conn: Connection) -> int:
    """A PASSIVE checkpoint: copies what it can, waits for no reader or writer;
    how many frames the WAL holds (-1 if it could not tell)."""
    ((_busy, frames, _copied),) = _driver(conn).execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    return int(frames)


def _run_in_transaction(
    conn: Connection, ops: Sequence[WriteOp], now: float, touches: TouchCache
) -> BatchOutcome:
    """Run `ops` in one transaction on `conn` and commit it, or roll it back.

    BEGIN IMMEDIATE takes the write lock now (the driver would begin a deferred
    transaction at the first write, after the batch's first reads). The
    transaction is the driver's: SQLAlchemy's begin and commit around it added
    half again to what SQLite spends on a one-row commit (bench/RESULTS.md,
    session 9). A batch that ran a statement through SQLAlchemy (a rare one:
    a snapshot, a deletion) has SQLAlchemy's own
    transaction begun as well, so that one ends through SQLAlchemy, which ends
    the driver's."""
    driver = _driver(conn)
    driver.execute("BEGIN IMMEDIATE")
    try:
        outcome = run_batch(conn, ops, now, touches)
        if conn.in_transaction():
            conn.commit()
        else:
            driver.commit()
    except BaseException:
        with contextlib.suppress(Exception):  # the error that got here is the one to raise
            if conn.in_transaction():
                conn.rollback()
            else:
                driver.rollback()
        raise
    return outcome


def _driver(conn: Connection) -> sqlite3.Connection:
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver


def _is_busy(exc: Exception) -> bool:
    """Another connection holds the lock (the raw driver's error or SQLAlchemy's)."""
    error = exc.orig if isinstance(exc, OperationalError) else exc
    return getattr(error, "sqlite_errorcode", None) in _SQLITE_BUSY_CODES
