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
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from collab.config import Settings
from collab.history import VersionHistory
from collab.metrics import Metrics
from collab.registry import LifecyclePolicy, RoomRegistry
from collab.retention import RetentionPolicy
from collab.room import RoomLimits
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
    metrics: Metrics


class DatabaseInUse(RuntimeError):
    """Another live server holds a lease on this database."""


def _is_running_here(lease: ServerLease) -> bool:
    if lease.hostname != socket.gethostname():
        return True  # cannot tell from here: trust the lease until it expires
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def running_servers(store: SqlStore) -> list[ServerLease]:
    """Leases of servers that are still up (a killed local server's lease is not)."""
    return [lease for lease in await store.live_leases() if _is_running_here(lease)]


async def _take_lease(store: SqlStore, settings: Settings) -> ServerLease:
    """One server per database: two would each compact away the other's updates."""
    for other in await store.live_leases():
        if _is_running_here(other) and other.pid != os.getpid():
            raise DatabaseInUse(
                f"another collab server ({other.url}, pid {other.pid} on {other.hostname}) "
                "is using this database"
            )
        await store.drop_lease(other.id)  # left by a server that was killed
    now = time.time()
    lease = ServerLease(
        id=str(uuid.uuid4()),
        url=settings.advertised_url,
        pid=os.getpid(),
        hostname=socket.gethostname(),
        started_at=now,
        heartbeat_at=now,
        ttl_s=settings.lease_interval_s * 3,
    )
    await store.save_lease(lease)
    return lease


@contextlib.asynccontextmanager
async def open_runtime(settings: Settings, *, is_server: bool) -> AsyncIterator[Runtime]:
    store = SqlStore(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    await store.open()
    metrics = Metrics()
    writer = UpdateWriter(
        store,
        max_batch_ops=settings.write_batch_max_ops,
        max_pending_ops=settings.write_backlog_max_ops,
        metrics=metrics,
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
            idle_timeout_s=settings.idle_timeout_s,
            max_rooms=settings.max_loaded_documents,
            max_connections=settings.max_connections,
            max_connections_per_document=settings.max_connections_per_document,
            room_limits=RoomLimits(
                max_document_bytes=settings.max_document_bytes or sys.maxsize,
                max_awareness_bytes=settings.max_awareness_bytes or sys.maxsize,
            ),
        ),
        metrics=metrics,
    )
    metrics.observe_gauges(
        connections=lambda: registry.connections,
        rooms=lambda: len(registry.rooms),
        pending_writes=lambda: writer.pending_ops,
        storage_failing=lambda: float(writer.is_failing),
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
    runtime = Runtime(settings, store, writer, registry, history, metrics)
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
    lease_task = None
    try:
        if is_server:
            lease = await _take_lease(store, settings)
            lease_task = asyncio.create_task(
                _renew_lease(store, lease, settings.lease_interval_s), name="lease"
            )
        yield runtime
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        try:
            await asyncio.wait_for(registry.close(), settings.shutdown_timeout_s)
        finally:
            await writer.close(writer_task, settings.shutdown_timeout_s)
            # The lease is renewed until every write is drained, then released.
            if lease_task is not None:
                lease_task.cancel()
                await asyncio.gather(lease_task, return_exceptions=True)
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
