"""The running parts of collab, started and stopped together in the right order.

Used by the web app's lifespan and by the CLI when it works on a database with
no server running, so both share one way to build and shut down the stack:
store -> writer -> registry -> history, plus their background tasks (janitor,
storage watch, retention, and - for a server - the lease that tells offline
tools it is there).
A server with a Redis URL is one process of a cluster: it also runs the Redis
bus (collab.cluster.redis_bus) and what applies the others' messages (collab.cluster.sync).
The history's compute workers (processes, started on first use) stop last.
A server also runs the events task (collab.webhooks.dispatcher): it publishes
the outbox's events to the feed and delivers them to webhook subscribers.
A server reads the revoked tokens before it serves anyone, and in a cluster
hears the others' revocations through their own feed
(collab.cluster.revocations, collab.cluster.revocation_feed).

Shutdown order matters: rooms are closed and snapshotted first, then the writer
drains every pending write (whose relays still reach the bus), then the bus
sends what it queued and leaves, then the lease is released and the store
closes. The rules of leases are in collab.storage.leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from collab.auth.revocation import RevocationList
from collab.cluster.revocations import Revocations
from collab.cluster.sync import ClusterSync
from collab.config import Settings
from collab.history.retention import RetentionPolicy
from collab.history.versions import VersionHistory
from collab.history.workers import ComputePool
from collab.metrics import Metrics
from collab.rooms.presence import PresenceLimits
from collab.rooms.registry import LifecyclePolicy, RoomRegistry
from collab.rooms.room_limits import RoomLimits
from collab.storage.deliveries import DeliveryQueue
from collab.storage.leases import renew_lease, running_lease_ids, take_lease
from collab.storage.outbox import EventOutbox
from collab.storage.sql_store import SqlStore
from collab.storage.store import ServerLease
from collab.storage.writer import UpdateWriter
from collab.webhooks.dispatcher import EventDispatcher, WebhookPolicy

if TYPE_CHECKING:
    from collab.cluster.redis_bus import RedisBus
    from collab.cluster.revocation_feed import RevocationFeed

logger = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    store: SqlStore
    writer: UpdateWriter
    registry: RoomRegistry
    history: VersionHistory
    metrics: Metrics
    revocations: Revocations
    events: EventOutbox
    deliveries: DeliveryQueue
    bus: RedisBus | None = None


@contextlib.asynccontextmanager
async def open_runtime(
    settings: Settings, *, is_server: bool, revocation_list: RevocationList | None = None
) -> AsyncIterator[Runtime]:
    """`revocation_list`: the one the server's access policy checks, kept up to date here."""
    metrics = Metrics()
    store = SqlStore(
        settings.database_url, sqlite_synchronous=settings.sqlite_synchronous, metrics=metrics
    )
    await store.open()
    lease_id = str(uuid.uuid4())
    bus = None
    if is_server and settings.redis_url:
        # Imported here: the Redis driver is an optional extra (`collab[cluster]`).
        from collab.cluster.redis_bus import BusSettings, RedisBus

        bus = RedisBus(
            BusSettings(
                url=settings.redis_url,
                prefix=settings.redis_prefix,
                stream_max_entries=settings.redis_stream_max_entries,
                heartbeat_interval_s=settings.cluster_heartbeat_interval_s,
                heartbeat_ttl_s=settings.cluster_heartbeat_ttl_s,
            ),
            process_id=lease_id,
        )
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
            compact_after_quiet_s=settings.compact_after_quiet_s,
            janitor_interval_s=settings.janitor_interval_s,
            auto_version_window_s=settings.auto_version_window_s,
            idle_timeout_s=settings.idle_timeout_s,
            max_rooms=settings.max_loaded_documents,
            max_connections=settings.max_connections,
            max_connections_per_document=settings.max_connections_per_document,
            room_limits=RoomLimits(
                max_document_bytes=settings.max_document_bytes or sys.maxsize,
                max_awareness_bytes=settings.max_awareness_bytes or sys.maxsize,
                presence=PresenceLimits(
                    max_client_ids_per_connection=settings.max_client_ids_per_connection
                    or sys.maxsize,
                    max_states=settings.max_awareness_states_per_document or sys.maxsize,
                    query_interval_s=settings.awareness_query_interval_s,
                ),
            ),
        ),
        metrics=metrics,
        cluster=bus,
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
        compute=ComputePool(settings.history_workers),
        diff_max_bytes=settings.diff_max_bytes,
    )
    revocations = Revocations(store, revocation_list)
    events = EventOutbox(store.engine, time.time)
    deliveries = DeliveryQueue(store.engine, time.time)
    runtime = Runtime(
        settings, store, writer, registry, history, metrics, revocations, events, deliveries, bus
    )
    writer_task = asyncio.create_task(writer.run(), name="update writer")
    writer_task.add_done_callback(_report_writer_death)
    background = [
        asyncio.create_task(registry.run_janitor(), name="janitor"),
        asyncio.create_task(registry.run_storage_watch(), name="storage watch"),
    ]
    lease: ServerLease | None = None
    revocation_feed: RevocationFeed | None = None
    dispatcher: EventDispatcher | None = None
    if is_server:
        await revocations.load()  # before anyone is admitted
        background.append(
            asyncio.create_task(
                history.run_retention(settings.retention_interval_s), name="retention"
            )
        )
        await deliveries.configure(settings.webhook_url_list)
        dispatcher = EventDispatcher(
            events,
            deliveries,
            webhook_policy(settings),
            metrics,
            owner=lease_id,
            wake=store.events_committed,
            live_owners=partial(running_lease_ids, store),
        )
    if bus is not None:
        sync = ClusterSync(registry, bus, metrics)
        bus.attach(sync)
        metrics.cluster_connected.set_function(lambda: float(bus.is_connected))
        background.append(asyncio.create_task(sync.run(), name="cluster catch-up"))
        await bus.start()
        from collab.cluster.revocation_feed import RevocationFeed

        revocation_feed = RevocationFeed(
            settings.redis_url,
            prefix=settings.redis_prefix,
            process_id=lease_id,
            listener=revocations,
        )
        revocations.attach_publisher(revocation_feed)
        background.append(asyncio.create_task(revocations.run(), name="revocations"))
        await revocation_feed.start()
    lease_task = None
    try:
        if is_server:
            lease = await take_lease(
                store,
                lease_id=lease_id,
                url=settings.advertised_url,
                renew_interval_s=settings.lease_interval_s,
                cluster=settings.redis_prefix if bus is not None else None,
                cluster_members=await bus.live_processes() if bus is not None else None,
            )
            lease_task = asyncio.create_task(
                renew_lease(store, lease, settings.lease_interval_s), name="lease"
            )
        if dispatcher is not None:
            # Only once this process holds its lease: a claim of a process
            # without one is taken for a dead one's and given back.
            background.append(asyncio.create_task(dispatcher.run(), name="events"))
        yield runtime
    finally:
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        try:
            await asyncio.wait_for(registry.close(), settings.shutdown_timeout_s)
        finally:
            await writer.close(writer_task, settings.shutdown_timeout_s)
            if revocation_feed is not None:
                await revocation_feed.close()
            if bus is not None:
                await bus.close()
            # The lease is renewed until every write is drained, then released.
            if lease_task is not None:
                lease_task.cancel()
                await asyncio.gather(lease_task, return_exceptions=True)
            if lease is not None:
                with contextlib.suppress(Exception):
                    await store.drop_lease(lease.id)
            try:
                await store.close()
            finally:
                await history.compute.close()


def webhook_policy(settings: Settings) -> WebhookPolicy:
    return WebhookPolicy(
        secret=settings.webhook_secret,
        max_attempts=settings.webhook_max_attempts,
        retry_base_s=settings.webhook_retry_base_s,
        retry_max_s=settings.webhook_retry_max_s,
        timeout_s=settings.webhook_timeout_s,
        debounce_s=settings.events_debounce_s,
        max_delay_s=settings.events_max_delay_s,
        poll_interval_s=settings.events_poll_interval_s,
        retention_s=settings.events_retention_s,
    )


def _report_writer_death(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # Nothing is made durable (or relayed) any more: say so as loudly as we can.
        logger.critical("the update writer died", exc_info=task.exception())
