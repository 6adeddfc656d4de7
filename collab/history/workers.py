"""Where the history's heavy computations run: a few worker processes, off the event loop.

A diff or a restore of a big document is seconds of pure Python (the text diff,
matching array elements, fingerprints) and a thread would not help: it holds
the GIL, so every room of the server would wait for it. So `ComputePool` runs
such a job in one of `workers` processes; the event loop only hands over bytes
and takes back the result.

Owns:
- the process pool: started on first use (most servers never need it), spawned
  rather than forked (the server has threads: a forked child could inherit a
  lock held by one of them), at most `workers` processes, stopped by `close()`
  (the runtime's shutdown) without waiting for a job nobody will read; a worker
  whose server was killed ends by itself;
- the slots: at most `workers` jobs at once, so nothing queues inside the pool.
  A job first takes a slot: `take_slot()` refuses at once (`ComputeBusy`, which
  a diff reports as 429) when none is free, `wait_for_slot()` waits its turn (a
  restore: an admin's request, one per document at a time) and goes before any
  new `take_slot()`. A slot is given back when its job has ended, not when its
  caller stops waiting for it;
- small jobs: below `inline_below_bytes` of input, a process round trip costs
  more than the work, so the job runs in a thread instead (still holding a slot).

Jobs are pure functions, bytes in and picklable data out, defined in modules
that import little (a worker imports them on first use). They never see a live
Doc: the live Doc is read and changed only on the event loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from types import TracebackType
from typing import ParamSpec, TypeVar

from collab.errors import CollabError

logger = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Below this much input (both sides of a diff, the current state plus the
# version for a restore) a job runs in a thread: it takes a few milliseconds.
INLINE_BELOW_BYTES = 32 * 1024
# How often a worker checks that the server that started it is still there.
_ORPHAN_CHECK_S = 1.0


class ComputeBusy(CollabError):
    """Every slot of the compute pool is taken; the caller may retry shortly."""


class ComputeFailed(CollabError):
    """A worker process died under a job (killed, out of memory); the pool is
    started afresh for the next job."""


class Slot:
    """The right to run one job in the pool; give it back with `release()` (a
    `with` block does), or hand it to `ComputePool.run`, which gives it back when
    the job has ended."""

    __slots__ = ("_is_released", "_pool")

    def __init__(self, pool: ComputePool) -> None:
        self._pool = pool
        self._is_released = False

    def release(self) -> None:
        if not self._is_released:
            self._is_released = True
            self._pool._give_back()

    def __enter__(self) -> Slot:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._pool._is_job_holding(self):
            self.release()


class ComputePool:
    def __init__(self, workers: int, *, inline_below_bytes: int = INLINE_BELOW_BYTES) -> None:
        if workers < 1:
            raise ValueError("a compute pool needs at least one worker")
        self.workers = workers
        self.inline_below_bytes = inline_below_bytes
        self._free = workers
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._job_slots: set[Slot] = set()  # slots a running job gives back when it ends
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None
        self._is_closed = False
        # Which process ran each finished job (the server's own pid: a thread).
        self.jobs_by_pid: Counter[int] = Counter()

    def __repr__(self) -> str:
        return f"<ComputePool busy={self.busy}/{self.workers} waiting={len(self._waiting)}>"

    @property
    def busy(self) -> int:
        """Slots taken (by jobs running, or about to)."""
        return self.workers - self._free

    @property
    def worker_pids(self) -> set[int]:
        """The pool's live worker processes (none before the first job)."""
        if self._executor is None:
            return set()
        return {pid for pid, process in self._executor._processes.items() if process.is_alive()}

    def take_slot(self) -> Slot:
        """A slot now, or `ComputeBusy`: nothing waits for one without bound."""
        if self._free == 0 or self._waiting:
            raise ComputeBusy(
                f"{self.workers} diffs or restores are being computed; retry in a moment"
            )
        self._free -= 1
        return Slot(self)

    async def wait_for_slot(self) -> Slot:
        """A slot, once one is free; the waiters are served in order, before
        any new `take_slot()`."""
        if self._free and not self._waiting:
            self._free -= 1
            return Slot(self)
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._give_back()  # it was ours already: pass it on
            else:
                self._waiting.remove(turn)
            raise
        return Slot(self)

    async def run(
        self, slot: Slot, input_bytes: int, job: Callable[P, T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`job(*args)` in a worker process (in a thread below `inline_below_bytes`
        of input), holding `slot` until it has ended. Raises what the job raised,
        or `ComputeFailed` if its process died."""
        loop = asyncio.get_running_loop()
        located = partial(_located, job, *args, **kwargs)
        try:
            if input_bytes < self.inline_below_bytes:
                running = loop.run_in_executor(None, located)
            else:
                running = asyncio.wrap_future(self._pool().submit(located), loop=loop)
        except BrokenProcessPool as exc:
            self._drop_broken_pool()
            raise ComputeFailed("the worker processes are gone; retry") from exc
        self._job_slots.add(slot)
        running.add_done_callback(lambda _: self._end_job(slot, running))
        try:
            # Shielded: a caller that stops waiting does not free the slot while
            # the job still runs (nor can it stop a job a process has started).
            pid, result = await asyncio.shield(running)
        except BrokenProcessPool as exc:
            self._drop_broken_pool()
            raise ComputeFailed("a worker process died computing this; retry") from exc
        self.jobs_by_pid[pid] += 1
        return result

    def _end_job(self, slot: Slot, running: asyncio.Future[tuple[int, T]]) -> None:
        self._job_slots.discard(slot)
        slot.release()
        if not running.cancelled():
            running.exception()  # retrieved here, whether or not a caller still waits

    def _is_job_holding(self, slot: Slot) -> bool:
        return slot in self._job_slots

    def _give_back(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes on; `_free` is unchanged
                return
        self._free += 1

    def _pool(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._is_closed:
            raise RuntimeError("the compute pool is closed")
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(
                max_workers=self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_prepare_worker,
                initargs=(os.getpid(),),
            )
            logger.info("compute pool started: up to %d worker processes", self.workers)
        return self._executor

    def _drop_broken_pool(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            logger.error("a compute worker process died: starting a fresh pool for the next job")
            executor.shutdown(wait=False, cancel_futures=True)

    async def close(self) -> None:
        """Stop the workers; a job still running is abandoned (its caller is gone
        with the server)."""
        self._is_closed = True
        executor, self._executor = self._executor, None
        if executor is None:
            return
        processes = list(executor._processes.values())
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            with contextlib.suppress(OSError, ValueError):
                process.terminate()
        await asyncio.to_thread(_join_all, processes)


def _prepare_worker(server_pid: int) -> None:
    """A worker leaves Ctrl+C to the server, which stops it in order, and ends
    when the server is gone, even killed (nothing would ever stop it then)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(
        target=_exit_with_server, args=(server_pid,), name="exit with server", daemon=True
    ).start()


def _exit_with_server(server_pid: int) -> None:
    while os.getppid() == server_pid:
        time.sleep(_ORPHAN_CHECK_S)
    os._exit(1)  # the server is gone, and with it whoever waited for this job


def _located(job: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> tuple[int, T]:
    """Runs in the worker: the job's result, and which process computed it."""
    return os.getpid(), job(*args, **kwargs)


def _join_all(processes: Sequence[multiprocessing.process.BaseProcess]) -> None:
    for process in processes:
        process.join(timeout=5)
