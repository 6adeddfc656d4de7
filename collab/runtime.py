"""The running parts of collab, started and stopped together in the right order.

Used by the web app's lifespan and by the CLI when it works on a database with
no server running, so both share one way to build and shut down the stack:
store -> writer -> registry -> history, plus their background tasks (janitor,
retention, and - for a server - the lease that tells offline tools it is there).

Shutdown order matters: rooms are closed and snapshotted first, then the writer
drains every pending write, then the store closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from collab.config import Settings
from collab.history import VersionHistory
from collab.registry import LifecyclePolicy, RoomRegistry
from collab.retention import RetentionPolicy
from collab.sql_store import SqlStore
from collab.store import ServerLease
from collab.writer import UpdateWriter

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    store: SqlStore
    writer: UpdateWriter
    registry: RoomRegistry
    history: VersionHistory


def lease_max_age_s(settings: Settings) -> float:
    """A lease not renewed for this long belongs to a server that is gone."""
    return settings.lease_interval_s * 3


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, *, is_server: bool) -> AsyncIterator[Runtime]:
    store = SqlStore(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    await store.open()
    writer = UpdateWriter(
        store,
        max_batch_ops=settings.write_batch_max_ops,
        max_pending_ops=settings.write_backlog_max_ops,
    )
    registry = RoomRegistry(
        store,
        writer,
        LifecyclePolicy(
            grace_s=settings.room_grace_s,
            compact_after_updates=settings.compact_after_updates,
            compact_after_s=settings.compact_after_s,
            janitor_interval_s=settings.janitor_interval_s,
            auto_version_window_s=settings.auto_version_window_s,
        ),
    )
    history = VersionHistory(
        store,
        registry,
        writer,
        RetentionPolicy(
            keep_all_s=settings.retention_keep_all_s,
            hourly_s=settings.retention_hourly_s,
            daily_s=settings.retention_daily_s,
        ),
    )
    runtime = Runtime(settings, store, writer, registry, history)
    writer_task = asyncio.create_task(writer.run(), name="update writer")
    writer_task.add_done_callback(_report_writer_death)
    background = [asyncio.create_task(registry.run_janitor(), name="janitor")]
    lease = None
    if is_server:
        background.append(
            asyncio.create_task(
                history.run_retention(settings.retention_interval_s), name="retention"
            )
        )
        lease = ServerLease(
            id=str(uuid.uuid4()),
            url=settings.advertised_url,
            pid=os.getpid(),
            hostname=socket.gethostname(),
            started_at=time.time(),
            heartbeat_at=time.time(),
        )
        await store.save_lease(lease)
        background.append(
            asyncio.create_task(_renew_lease(store, lease, settings.lease_interval_s), name="lease")
        )
    try:
        yield runtime
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        try:
            await asyncio.wait_for(registry.close(), settings.shutdown_timeout_s)
        finally:
            await writer.close(writer_task, settings.shutdown_timeout_s)
            if lease is not None:
                with contextlib.suppress(Exception):
                    await store.drop_lease(lease.id)
            await store.close()


def _report_writer_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # Nothing is made durable (or relayed) any more: say so as loudly as we can.
        logger.critical("the update writer died", exc_info=task.exception())


async def _renew_lease(store: SqlStore, lease: ServerLease, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            lease = dataclasses.replace(lease, heartbeat_at=time.time())
            await store.save_lease(lease)
        except Exception:  # task boundary: a missed heartbeat is retried next interval
            logger.exception("could not renew the server lease")
