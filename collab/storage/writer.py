"""The writer: the one task per process that makes writes durable (group commit).

Why one task: a burst of edits from many rooms becomes one transaction, and a
commit costs about the same for one op as for hundreds; and with one committer
the process's writes are ordered and never race each other.

Why the retries live here and nowhere else: the writer holds what a retry needs -
the batch in memory, the futures the rooms wait on, the backoff - while the store
below makes one attempt and says, by the exception it raises, why it failed. A
second retry layer in the store would hide failures from `is_failing` and
multiply the attempts.

The durability promise: a future resolves only after its op is committed, and
rooms relay an update (to their peers and to the other processes) from that
future's callback, so nothing reaches another client before it is durable.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque

from collab.metrics import Metrics
from collab.storage.store import (
    AppendUpdate,
    DocumentStore,
    OpDeclined,
    PermanentWriteError,
    WriteContention,
    WriteOp,
)

logger = logging.getLogger(__name__)

# A transaction aborted for colliding with another process's runs again at once,
# this many times in a row; after that it is treated as an outage (backoff).
CONTENTION_RETRIES = 5

_Entry = tuple[WriteOp | None, asyncio.Future[int | None], float]
_Result = int | OpDeclined | PermanentWriteError | None


class WriterClosed(RuntimeError):
    """The writer is shutting down and takes no new ops."""


class UpdateWriter:
    """The group-commit writer.

    Owns the queue of submitted ops and their futures, the count of ops not yet
    durable per document, the retrying of failed commits, and whether storage is
    failing.

    Rooms `submit` ops without awaiting; the writer takes what is queued (up to
    `max_batch_ops`, the appends apart from the long ops: `_next_batch`),
    commits it in ONE transaction through the store, and
    only then resolves each op's future, in submission order, to the op's result
    (an update's log row id, a snapshot's id).

    Invariants:
    - ops commit in submission order; futures resolve in submission order, and
      only once their op is durable;
    - a barrier (`submit(None)`) resolves once everything submitted before it is
      durable;
    - a commit that fails for an outage keeps the batch in memory and retries it
      with backoff (`retry_initial_s`, doubling up to `retry_max_s`) until it
      succeeds; meanwhile `is_failing` is true (rooms refuse new edits rather
      than queue writes that cannot be stored), and the documents involved
      report `pending_for(doc) > 0`, which blocks their unload;
    - a commit aborted for contention (`WriteContention`) runs again at once, up
      to `CONTENTION_RETRIES` times in a row, without counting as failing;
    - an op the database refuses for what it is (`PermanentWriteError`) is found
      by committing the batch one op at a time, and only its future fails; one
      the store declines (`OpDeclined`: a stale or contended snapshot) fails its
      own future; the rest of the batch commits either way.

    Never: resolve a future before its op is committed, drop an op that might
    still commit, or call into the layers above. Whoever needs its state asks:
    `pending_for`, `is_failing`, `wait_until_failing`, `wait_until_recovered`.
    """

    def __init__(
        self,
        store: DocumentStore,
        *,
        max_batch_ops: int = 1000,
        max_pending_ops: int = 20000,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 5.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._store = store
        self._max_batch_ops = max_batch_ops
        self._max_pending_ops = max_pending_ops
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._metrics = metrics or Metrics()
        # (op, its future, when it was queued); None ops are barriers
        self._queue: deque[_Entry] = deque()
        self._pending_by_document: Counter[str] = Counter()
        self._pending_ops = 0
        self._wakeup = asyncio.Event()
        self._capacity = asyncio.Event()
        self._capacity.set()
        self._is_closing = False
        self._is_running = False
        self._in_flight: list[_Entry] = []
        self.commits = 0  # transactions committed, for introspection and tests
        self.is_failing = False
        self._failing = asyncio.Event()  # set while commits fail
        self._recovered = asyncio.Event()  # set while they succeed
        self._recovered.set()

    @property
    def pending_ops(self) -> int:
        return self._pending_ops

    def pending_for(self, document: str) -> int:
        return self._pending_by_document[document]

    def submit(self, op: WriteOp | None) -> asyncio.Future[int | None]:
        """Queue `op` (None: a barrier); the future resolves when it is committed,
        to the op's result (the row id for `AppendUpdate`, the snapshot's id for
        `SaveSnapshot`, else None)."""
        if self._is_closing:
            raise WriterClosed("the update writer is shutting down")
        future: asyncio.Future[int | None] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future, time.monotonic()))
        self._pending_ops += 1
        if op is not None:
            self._pending_by_document[op.document] += 1
        if self._pending_ops >= self._max_pending_ops:
            self._capacity.clear()
        self._wakeup.set()
        return future

    @property
    def has_capacity(self) -> bool:
        """False while the backlog is full: what `wait_for_capacity` would wait for."""
        return self._capacity.is_set()

    async def wait_for_capacity(self) -> None:
        """Backpressure: a receive loop awaits this so a flood waits for the database."""
        await self._capacity.wait()

    async def flush(self) -> None:
        """Wait until everything submitted so far is durable."""
        await self.submit(None)

    @property
    def is_running(self) -> bool:
        return self._is_running

    async def run(self) -> None:
        self._is_running = True
        try:
            await self._run()
        finally:
            self._is_running = False

    async def _run(self) -> None:
        while True:
            while not self._queue:
                if self._is_closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = self._next_batch()
            self._in_flight = batch
            ops = [op for op, _, _ in batch if op is not None]
            results = iter(await self._commit_until_done(ops) if ops else [])
            if ops:
                self._metrics.persist_latency.observe(time.monotonic() - batch[0][2])
            for op, future, _ in batch:
                result = next(results) if op is not None else None
                self._pending_ops -= 1
                if op is not None:
                    self._pending_by_document[op.document] -= 1
                    if not self._pending_by_document[op.document]:
                        del self._pending_by_document[op.document]
                if future.done():
                    continue
                if isinstance(result, PermanentWriteError | OpDeclined):
                    future.set_exception(result)
                else:
                    future.set_result(result)
            if self._pending_ops < self._max_pending_ops:
                self._capacity.set()

    def _next_batch(self) -> list[_Entry]:
        """The next transaction's ops, from the head of the queue: a run of appends,
        or a run of the long ops (snapshots, deletions), never both.

        Why: a snapshot holds the writer for milliseconds (its state, the
        deletion of a thousand log rows), and the appends in its transaction
        would wait for all of it. Apart, the appends queued before it commit
        first, and those behind wait for one run of long ops, which is one
        snapshot in steady editing (the janitor compacts one room at a time:
        collab.rooms.compaction); at shutdown every room's snapshot still
        commits in a few transactions. Barriers go with either run."""
        queue = self._queue
        batch = [queue.popleft()]
        is_long = _is_long(batch[0][0])
        while queue and len(batch) < self._max_batch_ops:
            op = queue[0][0]
            if op is not None and _is_long(op) is not is_long:
                break
            batch.append(queue.popleft())
        return batch

    async def _commit_until_done(self, ops: list[WriteOp]) -> list[_Result]:
        delay_s = self._retry_initial_s
        collisions = 0
        while True:
            try:
                results: list[_Result] = list(await self._store.commit(ops))
            except PermanentWriteError as exc:
                if len(ops) > 1:
                    # Find the op the database refuses: commit the batch one op at a
                    # time, so every other op still becomes durable, in order.
                    return [r for op in ops for r in await self._commit_until_done([op])]
                logger.error("doc=%s write refused for good, dropped: %s", ops[0].document, exc)
                return [exc]
            except WriteContention as exc:
                if collisions < CONTENTION_RETRIES:
                    collisions += 1
                    logger.info("commit of %d ops hit %s; running it again", len(ops), exc)
                    continue
                self._note_failure(ops, delay_s, exc)
            except Exception as exc:
                # Task boundary: the batch stays in memory and is retried; nothing
                # waiting on it has been relayed, so nothing is lost or exposed.
                self._note_failure(ops, delay_s, exc)
            else:
                self._set_failing(False)
                self.commits += 1
                self._metrics.commits.inc()
                self._metrics.updates_persisted.inc(sum(type(op) is AppendUpdate for op in ops))
                return results
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, self._retry_max_s)
            collisions = 0

    def _note_failure(self, ops: list[WriteOp], delay_s: float, exc: Exception) -> None:
        logger.error(
            "commit of %d ops failed (documents: %s); retrying in %.2fs",
            len(ops),
            ",".join(sorted({op.document for op in ops})),
            delay_s,
            exc_info=exc,
        )
        self._metrics.commit_failures.inc()
        self._set_failing(True)

    def _set_failing(self, is_failing: bool) -> None:
        if is_failing is self.is_failing:
            return
        self.is_failing = is_failing
        if is_failing:
            self._recovered.clear()
            self._failing.set()
            logger.error("storage is failing: edits are refused until a commit succeeds")
        else:
            self._failing.clear()
            self._recovered.set()
            logger.warning("storage recovered: commits succeed again")

    async def wait_until_failing(self) -> None:
        """Return once commits are failing (at once if they are now)."""
        await self._failing.wait()

    async def wait_until_recovered(self) -> None:
        """Return once commits succeed again (at once if they do now)."""
        await self._recovered.wait()

    async def close(self, runner: asyncio.Task[None], timeout_s: float) -> None:
        """Stop taking ops, let `runner` drain the queue, cancel it after `timeout_s`."""
        self._is_closing = True
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(runner), timeout_s)
        except TimeoutError:
            logger.error(
                "shutdown: %d ops still not committed after %.1fs; giving up on them",
                self._pending_ops,
                timeout_s,
            )
            runner.cancel()
            for _, future, _ in [*self._in_flight, *self._queue]:
                future.cancel()  # nobody waits forever on a write that will never happen


def _is_long(op: WriteOp | None) -> bool:
    """Anything but an append (or a barrier)."""
    return op is not None and type(op) is not AppendUpdate
