"""Prometheus metrics: one `Metrics` object per server, served at GET /metrics.

Each server owns its own `CollectorRegistry` (not prometheus-client's global
one), so several servers in one process - the test suite runs many - never mix
their counts.

Hot-path cost is kept to a few attribute lookups: per-frame counts are plain
integers exported at scrape time, message types are looked up in a dict keyed
by the frame's first bytes, and gauges that mirror existing state
(connections, rooms, queued writes) are read only when scraped (`set_function`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE_LATEST", "Metrics", "message_type"]

# The y-protocols message kinds, by the frame's first byte and (for sync) second.
_SYNC_TYPES = {0: "sync_step1", 1: "sync_step2", 2: "sync_update"}
_TOP_TYPES = {1: "awareness", 2: "auth", 3: "query_awareness"}
MESSAGE_TYPES = (*_SYNC_TYPES.values(), *_TOP_TYPES.values(), "other")

# The `*_created` series (a timestamp per counter) double the exposition for no use here.
disable_created_metrics()


def message_type(frame: bytes) -> str:
    """The y-protocols kind of an encoded frame, for labels ('other' if unknown)."""
    if not frame:
        return "other"
    if frame[0] == 0:
        return _SYNC_TYPES.get(frame[1], "other") if len(frame) > 1 else "other"
    return _TOP_TYPES.get(frame[0], "other")


class _DirectionCounters(Collector):
    """Messages and bytes in one direction, by message type.

    Counted per frame on the hot path, so these are plain integers (no lock, no
    label lookup) turned into counter families only when scraped. Safe because
    only the event loop's thread counts."""

    def __init__(self, direction: str, registry: CollectorRegistry) -> None:
        self._direction = direction
        self._messages = dict.fromkeys(MESSAGE_TYPES, 0)
        self._bytes = dict.fromkeys(MESSAGE_TYPES, 0)
        registry.register(self)

    def count(self, frame: bytes, copies: int = 1) -> None:
        kind = message_type(frame)
        self._messages[kind] += copies
        self._bytes[kind] += len(frame) * copies

    def collect(self) -> Iterator[CounterMetricFamily]:
        direction = self._direction
        messages = CounterMetricFamily(
            f"collab_messages_{direction}", f"Messages {direction}, by type", labels=["type"]
        )
        size = CounterMetricFamily(
            f"collab_{direction}_bytes", f"Bytes of messages {direction}, by type", labels=["type"]
        )
        for kind in MESSAGE_TYPES:
            messages.add_metric([kind], self._messages[kind])
            size.add_metric([kind], self._bytes[kind])
        yield messages
        yield size


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        gauge = partial(Gauge, registry=r)
        counter = partial(Counter, registry=r)
        self.connections = gauge("collab_connections", "Open WebSocket connections")
        self.rooms_loaded = gauge("collab_rooms_loaded", "Documents loaded in memory")
        self.pending_writes = gauge("collab_pending_writes", "Write operations not yet committed")
        self.storage_failing = gauge(
            "collab_storage_failing", "1 while commits to the database are failing"
        )
        self.messages_ignored = counter(
            "collab_messages_ignored",
            "Messages read and ignored: an unknown type, a read-only connection's sync step 2, "
            "or a query-awareness repeated within the interval",
            ["reason"],
        )
        self.sync_replies_shared = counter(
            "collab_sync_replies_shared",
            "Sync step 2 replies handed to a joiner without encoding (shared by joiners)",
        )
        self.sqlite_commits = counter(
            "collab_sqlite_commits",
            "SQLite commits by where they ran: on the event loop (inline) or the commit thread",
            ["path"],
        )
        self.documents_loaded = counter("collab_documents_loaded", "Documents loaded from storage")
        self.connections_opened = counter(
            "collab_connections_opened", "WebSocket connections accepted"
        )
        self.received = _DirectionCounters("received", r)
        self.sent = _DirectionCounters("sent", r)
        self.updates_persisted = counter(
            "collab_updates_persisted", "Yjs updates committed to the database"
        )
        self.commits = counter("collab_commits", "Database transactions committed by the writer")
        self.commit_failures = counter(
            "collab_commit_failures", "Commits that failed and were retried"
        )
        self.persist_latency = Histogram(
            "collab_persist_latency_seconds",
            "Time from a write being queued to its commit (per batch, its oldest write)",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
            registry=r,
        )
        self.paced_reads = counter(
            "collab_paced_reads",
            "Messages after which a connection's next read waited for its rate limit "
            "(COLLAB_RATE_LIMIT_PER_S): backpressure, not a refusal",
        )
        self.inflated_bytes = counter(
            "collab_inflated_bytes",
            "Bytes inflated from permessage-deflate messages; inflating stops at the "
            "message type's limit (collab.api.assembly)",
        )
        self.queue_overflows = counter(
            "collab_send_queue_overflows", "Connections closed because their send queue overflowed"
        )
        self._closes = counter(
            "collab_connections_closed", "Closed connections, by close code", ["code"]
        )
        self._refusals = counter(
            "collab_limit_refusals", "Requests refused by a limit, by limit", ["limit"]
        )
        self._auth_failures = counter(
            "collab_auth_failures", "Refused credentials, by reason", ["reason"]
        )
        self.quarantined_rows = counter(
            "collab_quarantined_rows",
            "Stored rows that did not decode and were moved to quarantine",
        )
        self.snapshots_declined = counter(
            "collab_snapshots_declined",
            "Snapshots the database declined (conflict: another process saved one first; "
            "busy: another process was compacting the document), by reason",
            ["reason"],
        )
        self.cluster_updates_applied = counter(
            "collab_cluster_updates_applied",
            "Updates made durable by another server process and applied here",
        )
        self.cluster_catch_ups = counter(
            "collab_cluster_catch_ups",
            "Live documents caught up from storage because the stream could not vouch "
            "for every message (Redis restarted or was away, trimming, a process died)",
        )
        self.cluster_connected = gauge(
            "collab_cluster_redis_connected",
            "1 while the Redis bus is connected (0 also for a server on its own)",
        )
        self.events_published = counter(
            "collab_events_published", "Events numbered and put in the feed by this process"
        )
        self.webhook_deliveries = counter(
            "collab_webhook_deliveries",
            "Webhook delivery attempts by this process, by outcome: delivered, failed "
            "(retried later) or parked (failed for the last time)",
            ["outcome"],
        )
        self.webhook_parked = gauge(
            "collab_webhook_parked",
            "Webhook deliveries parked after their last attempt (every process's), "
            "waiting for an administrator to retry them",
        )
        self.webhook_latency = Histogram(
            "collab_webhook_delivery_latency_seconds",
            "Time from a change's commit to its event's delivery",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=r,
        )
        self.rooms_evicted = counter(
            "collab_rooms_evicted",
            "Idle documents unloaded early to stay under the loaded-documents limit",
        )

    def closed(self, code: int | None) -> None:
        self._closes.labels(str(code) if code is not None else "none").inc()

    def refused(self, limit: str) -> None:
        self._refusals.labels(limit).inc()

    def auth_failed(self, reason: str) -> None:
        self._auth_failures.labels(reason).inc()

    def observe_gauges(
        self,
        *,
        connections: Callable[[], float],
        rooms: Callable[[], float],
        pending_writes: Callable[[], float],
        storage_failing: Callable[[], float],
    ) -> None:
        """Gauges that mirror state kept elsewhere are read at scrape time."""
        self.connections.set_function(connections)
        self.rooms_loaded.set_function(rooms)
        self.pending_writes.set_function(pending_writes)
        self.storage_failing.set_function(storage_failing)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
