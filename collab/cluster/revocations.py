"""Revoking tokens on every process of a server, and closing what they hold open.

Owns this process's side of revocation: the table (through the store) is the
source of truth; the `RevocationList` the access policy checks is this
process's copy of it; and whatever this process learns, it also applies to the
connections it serves (through the `ConnectionCloser` the edge attaches), so a
revoked token's connections close at once, not at their next reconnect.

How a revocation travels:
- made here (`revoke`): stored first, then added to the list, then this
  process's connections holding it are closed, then it is published (the
  revocation feed, collab.cluster.revocation_feed, when there is a Redis bus);
- heard from another process (`on_revoked`): added and applied the same way;
- whenever the feed cannot vouch for having heard everything (it connected, or
  reconnected, or a publisher dropped entries), it asks for the table to be
  read again (`on_revocations_unknown`), and `run` merges it in. At start the
  server reads the table before it accepts anyone.

A server on its own has no feed: the table and its own list are all there is.
Never: block a caller on Redis, or drop a revocation it could not publish (the
table has it, and every other process reads the table again on reconnecting).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Protocol

from collab.auth.revocation import Revocation, RevocationKind, RevocationList
from collab.storage.store import DocumentStore, RevocationRecord

logger = logging.getLogger(__name__)

_RELOAD_RETRY_S = 1.0


class ConnectionCloser(Protocol):
    """The connection edge: closes the open connections a revocation covers."""

    def close_revoked(self, revocation: Revocation) -> int:
        """Close them (4401); how many there were."""
        ...


class RevocationPublisher(Protocol):
    """Tells the other processes (collab.cluster.revocation_feed.RevocationFeed)."""

    def publish_revocation(self, revocation: Revocation) -> None:
        """Queue it for the others; never blocks."""
        ...


class Revocations:
    """This process's revocations: the list the policy checks, kept equal to the
    table, applied to open connections. Satisfies the feed's `RevocationListener`."""

    def __init__(
        self,
        store: DocumentStore,
        revocations: RevocationList | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self.list = revocations if revocations is not None else RevocationList()
        self._clock = clock
        self._closer: ConnectionCloser | None = None
        self._publisher: RevocationPublisher | None = None
        self._reload_due = asyncio.Event()

    def attach_closer(self, closer: ConnectionCloser) -> None:
        self._closer = closer

    def attach_publisher(self, publisher: RevocationPublisher) -> None:
        self._publisher = publisher

    async def revoke(self, revocation: Revocation) -> None:
        """Store it, refuse it here from now on, close what it holds open here,
        and tell the other processes."""
        await self._store.add_revocation(_record(revocation))
        self._apply(revocation)
        if self._publisher is not None:
            self._publisher.publish_revocation(revocation)

    async def in_force(self) -> list[Revocation]:
        """What the table holds now, oldest first."""
        return [_revocation(record) for record in await self._store.list_revocations()]

    async def load(self) -> None:
        """Merge the table into this process's list; apply what is new here."""
        records = await self._store.list_revocations()
        for revocation in self.list.merge(_revocation(record) for record in records):
            self._close_connections(revocation)
        self.list.in_force(self._clock())  # drops the lapsed ones

    # -- the RevocationListener side (the feed calls in; never blocks) -----------

    def on_revoked(self, revocation: Revocation) -> None:
        self._apply(revocation)

    def on_revocations_unknown(self) -> None:
        self._reload_due.set()

    async def run(self) -> None:
        """Read the table again whenever the feed asks."""
        while True:
            await self._reload_due.wait()
            self._reload_due.clear()
            try:
                await self.load()
            except Exception:  # task boundary: the table is read again shortly
                logger.exception("reading the token revocations failed; retrying")
                await asyncio.sleep(_RELOAD_RETRY_S)
                self._reload_due.set()

    def _apply(self, revocation: Revocation) -> None:
        if self.list.add(revocation):
            self._close_connections(revocation)
        self.list.in_force(self._clock())  # drops the lapsed ones

    def _close_connections(self, revocation: Revocation) -> None:
        closed = self._closer.close_revoked(revocation) if self._closer is not None else 0
        logger.info(
            "token revocation by %s %r (by %s): %d open connection(s) here closed",
            revocation.kind,
            revocation.value,
            revocation.revoked_by or "-",
            closed,
        )


def _record(revocation: Revocation) -> RevocationRecord:
    return RevocationRecord(
        kind=revocation.kind.value,
        value=revocation.value,
        revoked_at=revocation.revoked_at,
        until=revocation.until,
        reason=revocation.reason,
        revoked_by=revocation.revoked_by,
    )


def _revocation(record: RevocationRecord) -> Revocation:
    return Revocation(
        kind=RevocationKind(record.kind),
        value=record.value,
        revoked_at=record.revoked_at,
        until=record.until,
        reason=record.reason,
        revoked_by=record.revoked_by,
    )
