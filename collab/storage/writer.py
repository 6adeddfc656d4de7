"""Group commit: the single task that makes updates durable.

Owns the write queue. Rooms `submit` ops without awaiting; the writer takes
everything queued (up to `max_batch_ops`), commits it in ONE transaction, and
only then resolves each op's future, in submission order, to the op's result
(an update's log row id, a snapshot's id). Rooms relay an update - to their
peers and to the other processes - from that future's callback, so nothing
reaches another client before it is committed: that is the durability promise.

Invariants:
- Ops commit in submission order; futures resolve in submission order.
- A failed commit keeps the batch in memory and retries with backoff; the
  documents involved report `pending_for(doc) > 0`, which blocks their unload.
- A barrier (`submit(None)`) resolves once everything submitted before it is durable.
- An op the store declines (`OpDeclined`: a stale or contended snapshot) fails
  its own future; the rest of its batch commits.
- While commits fail, `is_failing` is true and `on_failing` listeners hear of each
  change, so rooms can refuse new edits and tell their clients instead of
  queueing writes that cannot be stored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable

from collab.metrics import Metrics
from collab.storage.store import (
    AppendUpdate,
    DocumentStore,
    OpDeclined,
    PermanentWriteError,
    WriteOp,
)

logger = logging.getLogger(__name__)


_Entry = tuple[WriteOp | None, asyncio.Future[int | None], float]


class WriterClosed(RuntimeError):
    """The writer is shutting down and takes no new ops."""


class UpdateWriter:
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
        self.ops_committed = 0
        self.is_failing = False
        self.on_failing: list[Callable[[bool], None]] = []

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
            batch = [
                self._queue.popleft() for _ in range(min(len(self._queue), self._max_batch_ops))
            ]
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

    async def _commit_until_done(
        self, ops: list[WriteOp]
    ) -> list[int | OpDeclined | PermanentWriteError | None]:
        delay_s = self._retry_initial_s
        while True:
            try:
                results: list[int | OpDeclined | PermanentWriteError | None] = list(
                    await self._store.commit(ops)
                )
            except PermanentWriteError as exc:
                if len(ops) > 1:
                    # Find the op the database refuses: commit the batch one op at a
                    # time, so every other op still becomes durable, in order.
                    return [r for op in ops for r in await self._commit_until_done([op])]
                logger.error("doc=%s write refused for good, dropped: %s", ops[0].document, exc)
                return [exc]
            except Exception:
                # Task boundary: the batch stays in memory and is retried; nothing
                # waiting on it has been relayed, so nothing is lost or exposed.
                logger.exception(
                    "commit of %d ops failed (documents: %s); retrying in %.2fs",
                    len(ops),
                    ",".join(sorted({op.document for op in ops})),
                    delay_s,
                )
                self._metrics.commit_failures.inc()
                self._set_failing(True)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, self._retry_max_s)
                continue
            self._set_failing(False)
            self.commits += 1
            self.ops_committed += len(ops)
            self._metrics.commits.inc()
            self._metrics.updates_persisted.inc(sum(type(op) is AppendUpdate for op in ops))
            return results

    def _set_failing(self, is_failing: bool) -> None:
        if is_failing is self.is_failing:
            return
        self.is_failing = is_failing
        if is_failing:
            logger.error("storage is failing: edits are refused until a commit succeeds")
        else:
            logger.warning("storage recovered: commits succeed again")
        for listener in list(self.on_failing):
            try:
                listener(is_failing)
            except Exception:  # task boundary: a listener must not stop the writer
                logger.exception("storage state listener failed")

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
