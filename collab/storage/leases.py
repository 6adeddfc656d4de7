"""Server leases: a running server announces itself in its database.

Why: offline tools (`collab snapshots`) must never write behind a live server's
back, so they look for a lease and go through that server instead; and a server
on its own must be the only one on its database (the clients of two would not
see each other's edits), while servers of one cluster (same Redis key prefix)
share it.

A lease is live while `heartbeat_at + ttl_s` is in the future; its server renews
it every interval and the TTL is three intervals, so a missed heartbeat or two
is not a death. A lease of a process on this host that no longer exists is dead at once
(a killed server leaves its row behind).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
import time
from collections.abc import Collection

from collab.storage.store import DocumentStore, ServerLease

logger = logging.getLogger(__name__)

# A lease's TTL in renewal intervals.
_TTL_INTERVALS = 3


class DatabaseInUse(RuntimeError):
    """Another live server holds a lease on this database."""


def _is_running_here(lease: ServerLease) -> bool:
    """False only if the lease's process is known to be gone."""
    if lease.hostname != socket.gethostname():
        return True  # cannot tell from here: trust the lease until it expires
    try:
        os.kill(lease.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def running_servers(store: DocumentStore) -> list[ServerLease]:
    """Leases of servers that are still up (a killed local server's lease is not)."""
    return [lease for lease in await store.live_leases() if _is_running_here(lease)]


async def running_lease_ids(store: DocumentStore) -> list[str]:
    """The lease ids of `running_servers`: who may still hold a claim on a row."""
    return [lease.id for lease in await running_servers(store)]


async def take_lease(
    store: DocumentStore,
    *,
    lease_id: str,
    url: str,
    renew_interval_s: float,
    cluster: str | None,
    cluster_members: Collection[str] | None = None,
) -> ServerLease:
    """Announce this server, or raise `DatabaseInUse` if it may not use the database.

    `cluster`: the Redis key prefix of the cluster this server is part of (None:
    a server on its own). `cluster_members`: the ids of the processes with a
    current heartbeat in that Redis (None: unknown); a server that shares the
    database but is missing there is reported (it is likely on another Redis).
    Leases left by killed servers are dropped on the way."""
    for other in await store.live_leases():
        if not _is_running_here(other) or other.pid == os.getpid():
            await store.drop_lease(other.id)  # left by a server that was killed
            continue
        where = f"{other.url}, pid {other.pid} on {other.hostname}"
        if cluster is None or other.cluster != cluster:
            if cluster is None:
                advice = "run every server with --redis-url to share it"
            elif other.cluster is None:
                advice = "it runs on its own (no --redis-url): restart it with --redis-url"
            else:
                advice = (
                    f"it is in cluster {other.cluster!r}; give every server the same "
                    "--redis-url and COLLAB_REDIS_PREFIX"
                )
            raise DatabaseInUse(f"another collab server ({where}) is using this database; {advice}")
        if cluster_members is not None and other.id not in cluster_members:
            logger.warning(
                "server %s shares this database but has no heartbeat in this Redis "
                "(prefix %r): is it connected to the same Redis?",
                where,
                cluster,
            )
    now = time.time()
    lease = ServerLease(
        id=lease_id,
        url=url,
        pid=os.getpid(),
        hostname=socket.gethostname(),
        started_at=now,
        heartbeat_at=now,
        ttl_s=renew_interval_s * _TTL_INTERVALS,
        cluster=cluster,
    )
    await store.save_lease(lease)
    return lease


async def renew_lease(store: DocumentStore, lease: ServerLease, interval_s: float) -> None:
    """Keep `lease` live: a heartbeat every `interval_s`, until cancelled."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            lease = dataclasses.replace(lease, heartbeat_at=time.time())
            await store.save_lease(lease)
        except Exception:  # task boundary: a missed heartbeat is retried next interval
            logger.exception("could not renew the server lease")
