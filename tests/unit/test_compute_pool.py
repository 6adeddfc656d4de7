"""The compute pool: slots that bound the history's heavy jobs (refused or waited
for, never queued without bound), given back when a job ends; jobs over the
inline size run in a worker process, which `close()` stops."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from pathlib import Path

import pytest

from collab.history.workers import ComputeBusy, ComputePool
from tests.support.waiting import TIMEOUT_S, eventually


async def test_taking_a_slot_is_refused_when_none_is_free_and_a_waiter_goes_first():
    pool = ComputePool(1)
    first = pool.take_slot()
    with pytest.raises(ComputeBusy, match="retry"):
        pool.take_slot()
    waiter = asyncio.create_task(pool.wait_for_slot())
    await asyncio.sleep(0)
    first.release()
    first.release()  # once only
    with pytest.raises(ComputeBusy):
        pool.take_slot()  # the slot went to the waiter, not to whoever asks next
    second = await waiter
    assert pool.busy == 1
    second.release()
    assert pool.busy == 0
    pool.take_slot().release()


async def test_a_slot_is_held_until_its_job_ends_even_if_its_caller_stops_waiting():
    pool = ComputePool(1)
    may_finish = threading.Event()
    try:
        with pool.take_slot() as slot:
            caller = asyncio.create_task(pool.run(slot, 0, may_finish.wait))
            await asyncio.sleep(0)
            caller.cancel()
            with pytest.raises(asyncio.CancelledError):
                await caller
        assert pool.busy == 1, "the job still runs in its thread"
        with pytest.raises(ComputeBusy):
            pool.take_slot()
    finally:
        may_finish.set()
    await eventually(lambda: pool.busy == 0, what="slot given back")


async def test_a_slot_not_handed_to_a_job_is_given_back_by_its_block():
    pool = ComputePool(1)
    with pytest.raises(ValueError), pool.take_slot():
        raise ValueError("the inputs could not be read")
    assert pool.busy == 0


async def test_a_big_job_runs_in_a_worker_process_which_close_stops():
    pool = ComputePool(1, inline_below_bytes=1)
    try:
        with pool.take_slot() as slot:
            worker_pid = await pool.run(slot, 1, os.getpid)
        assert worker_pid != os.getpid()
        assert pool.jobs_by_pid == {worker_pid: 1}
        assert pool.worker_pids == {worker_pid}
        with pool.take_slot() as slot:
            assert await pool.run(slot, 0, os.getpid) == os.getpid(), "small: a thread"
    finally:
        await pool.close()
    assert pool.worker_pids == set()
    with pytest.raises(ProcessLookupError):
        os.kill(worker_pid, 0)


_KILLED_SERVER = """
import asyncio, os, signal
from collab.history.workers import ComputePool

async def main():
    pool = ComputePool(1, inline_below_bytes=1)
    with pool.take_slot() as slot:
        print(await pool.run(slot, 1, os.getpid), flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # no shutdown: like kill -9

asyncio.run(main())
"""


async def test_a_worker_ends_by_itself_when_its_server_is_killed():
    server = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_SERVER, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(server.communicate(), TIMEOUT_S * 3)
    assert server.returncode == -signal.SIGKILL
    worker_pid = int(out)

    def is_gone() -> bool:
        try:
            os.kill(worker_pid, 0)
        except ProcessLookupError:
            return True
        # Exited, but not reaped yet by whoever adopted it (a zombie).
        stat = Path(f"/proc/{worker_pid}/stat")
        return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"

    await eventually(is_gone, what="worker gone")
