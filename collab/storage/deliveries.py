"""Webhook subscriptions and their delivery queue, shared by every process.

Owns the subscriptions (configured ones, kept equal to `COLLAB_WEBHOOK_URLS`,
and those added through the admin API) and the `webhook_deliveries` rows the
publisher (collab.storage.outbox) makes: one per event and subscription.

How several processes deliver each event once per subscription: a process
*claims* a row with one conditional UPDATE (`claim`: only if no live claim is on
it), which exactly one process can win on SQLite and PostgreSQL alike; a claim
is a lease, so a process that dies mid-delivery leaves the row to another once
it lapses (at least once, never lost). Per-document order: only the oldest
pending row of a (subscription, document) queue is ever due (`due`), so a
document's events reach a subscriber one after another; a parked row no longer
holds the queue up.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    Integer,
    Row,
    Select,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from collab.storage.events import Event, event_of
from collab.storage.outbox import PARKED, PENDING
from collab.storage.sql_schema import events, webhook_deliveries, webhook_subscriptions

CONFIGURED = "config"  # from COLLAB_WEBHOOK_URLS
ADDED = "api"  # through the admin API
# Any constant both sides agree on: the advisory lock for syncing configured URLs.
_SUBSCRIPTIONS_LOCK_KEY = 0x636F6C77  # "colw"

_d = webhook_deliveries.c
_s = webhook_subscriptions.c


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    url: str
    source: str  # CONFIGURED or ADDED
    created_at: float
    secret: str | None  # None: COLLAB_WEBHOOK_SECRET


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event for one subscription, due or parked."""

    subscription: Subscription
    event: Event
    attempts: int  # failed attempts so far
    last_attempt_at: float | None = None
    last_error: str | None = None


class DeliveryQueue:
    def __init__(self, engine: AsyncEngine, clock: Callable[[], float]) -> None:
        self._engine = engine
        self._clock = clock

    # -- subscriptions ---------------------------------------------------------

    async def subscriptions(self) -> list[Subscription]:
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(webhook_subscriptions).order_by(_s.id))
            return [
                Subscription(row.id, row.url, row.source, row.created_at, row.secret)
                for row in rows
            ]

    async def subscribe(self, url: str, secret: str | None, source: str = ADDED) -> Subscription:
        now = self._clock()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                insert(webhook_subscriptions).values(
                    url=url, secret=secret, source=source, created_at=now
                )
            )
        key = result.inserted_primary_key
        assert key is not None
        return Subscription(int(key[0]), url, source, now, secret)

    async def unsubscribe(self, subscription_id: int) -> bool:
        """Delete an added subscription and its deliveries; False if there is none."""
        async with self._engine.begin() as conn:
            await conn.execute(
                delete(webhook_deliveries).where(_d.subscription_id == subscription_id)
            )
            result = await conn.execute(
                delete(webhook_subscriptions).where(_s.id == subscription_id, _s.source == ADDED)
            )
        return bool(result.rowcount)

    async def configure(self, urls: Sequence[str]) -> None:
        """Make the configured subscriptions exactly `urls` (at start-up)."""
        async with self._engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                # Processes starting together take turns: no URL subscribed twice.
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SUBSCRIPTIONS_LOCK_KEY}
                )
            rows = (await conn.execute(select(_s.id, _s.url).where(_s.source == CONFIGURED))).all()
            known = {row.url for row in rows}
            gone = [row.id for row in rows if row.url not in urls]
            if gone:
                await conn.execute(delete(webhook_deliveries).where(_d.subscription_id.in_(gone)))
                await conn.execute(delete(webhook_subscriptions).where(_s.id.in_(gone)))
            now = self._clock()
            for url in dict.fromkeys(urls):
                if url not in known:
                    await conn.execute(
                        insert(webhook_subscriptions).values(
                            url=url, secret=None, source=CONFIGURED, created_at=now
                        )
                    )

    # -- deliveries ------------------------------------------------------------

    async def due(self, limit: int) -> list[Delivery]:
        """Rows whose time has come, unclaimed, each the oldest pending one of its
        (subscription, document) queue; oldest first."""
        params = {"now": self._clock(), "limit": limit}
        async with self._engine.connect() as conn:
            return [_delivery(row) for row in await conn.execute(_DUE, params)]

    async def claim(self, delivery: Delivery, owner: str, lease_s: float) -> bool:
        """Take the row for `lease_s`; False if another process holds it."""
        now = self._clock()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(webhook_deliveries)
                .where(
                    *_key(delivery),
                    _d.status == PENDING,
                    or_(_d.claimed_until.is_(None), _d.claimed_until < now),
                )
                .values(claimed_by=owner, claimed_until=now + lease_s)
            )
        return bool(result.rowcount)

    async def release_claims(self, *, keep: Collection[str]) -> int:
        """Give back the claims held by processes other than `keep` (the servers
        still running); how many. A killed process's claims would otherwise hold
        their rows until they expire (`WebhookPolicy.claim_s`)."""
        now = self._clock()
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(webhook_deliveries)
                .where(
                    _d.status == PENDING,
                    _d.claimed_until > now,
                    _d.claimed_by.not_in(sorted(keep)),
                )
                .values(claimed_by=None, claimed_until=None)
            )
        return int(result.rowcount)

    async def release(self, delivery: Delivery, owner: str) -> None:
        """Give a claimed row back untried (this process is stopping)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(webhook_deliveries)
                .where(*_key(delivery), _d.claimed_by == owner)
                .values(claimed_by=None, claimed_until=None)
            )

    async def delivered(self, delivery: Delivery) -> None:
        async with self._engine.begin() as conn:
            await conn.execute(delete(webhook_deliveries).where(*_key(delivery)))

    async def failed(
        self, delivery: Delivery, owner: str, *, error: str, retry_at: float | None
    ) -> None:
        """Count a failed attempt: due again at `retry_at`, or parked (None)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                update(webhook_deliveries)
                .where(*_key(delivery), _d.claimed_by == owner)
                .values(
                    attempts=delivery.attempts + 1,
                    status=PENDING if retry_at is not None else PARKED,
                    next_attempt_at=retry_at if retry_at is not None else self._clock(),
                    last_attempt_at=self._clock(),
                    last_error=error[:1000],
                    claimed_by=None,
                    claimed_until=None,
                )
            )

    async def parked(self, *, limit: int, subscription_id: int | None = None) -> list[Delivery]:
        query = self._joined().where(_d.status == PARKED)
        if subscription_id is not None:
            query = query.where(_d.subscription_id == subscription_id)
        async with self._engine.connect() as conn:
            rows = await conn.execute(query.order_by(_d.event_seq).limit(limit))
            return [_delivery(row) for row in rows]

    async def count_parked(self) -> int:
        async with self._engine.connect() as conn:
            count = await conn.scalar(
                select(func.count()).select_from(webhook_deliveries).where(_d.status == PARKED)
            )
        return int(count or 0)

    async def retry_parked(
        self, *, subscription_id: int | None = None, event_seq: int | None = None
    ) -> int:
        """Make parked rows due again, from a fresh count of attempts; how many."""
        conditions = [_d.status == PARKED]
        if subscription_id is not None:
            conditions.append(_d.subscription_id == subscription_id)
        if event_seq is not None:
            conditions.append(_d.event_seq == event_seq)
        async with self._engine.begin() as conn:
            result = await conn.execute(
                update(webhook_deliveries)
                .where(and_(*conditions))
                .values(status=PENDING, attempts=0, next_attempt_at=self._clock())
            )
        return int(result.rowcount)

    @staticmethod
    def _joined() -> Select[Any]:
        return (
            select(
                _s.id,
                _s.url,
                _s.source,
                _s.created_at,
                _s.secret,
                events.c.seq,
                events.c.type,
                events.c.document,
                events.c.occurred_at,
                events.c.data,
                _d.attempts,
                _d.last_attempt_at,
                _d.last_error,
            )
            .select_from(webhook_deliveries)
            .join(webhook_subscriptions, _s.id == _d.subscription_id)
            .join(events, events.c.seq == _d.event_seq)
        )


def _key(delivery: Delivery) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return (
        _d.subscription_id == delivery.subscription.id,
        _d.event_seq == delivery.event.seq,
    )


def _delivery(row: Row[Any]) -> Delivery:
    r = row._mapping
    return Delivery(
        Subscription(r["id"], r["url"], r["source"], r["created_at"], r["secret"]),
        event_of(r["seq"], r["type"], r["document"], r["occurred_at"], r["data"]),
        int(r["attempts"]),
        r["last_attempt_at"],
        r["last_error"],
    )


def _due_query() -> Select[Any]:
    """`DeliveryQueue.due`'s query, built once (the events task runs it every
    pass, at least twice a second): bound `now` and `limit`."""
    now = bindparam("now", type_=Float())
    earlier = webhook_deliveries.alias("earlier")
    is_behind = (
        select(earlier.c.event_seq)
        .where(
            earlier.c.subscription_id == _d.subscription_id,
            earlier.c.document == _d.document,
            earlier.c.status == PENDING,
            earlier.c.event_seq < _d.event_seq,
        )
        .exists()
    )
    return (
        DeliveryQueue._joined()
        .where(
            _d.status == PENDING,
            _d.next_attempt_at <= now,
            or_(_d.claimed_until.is_(None), _d.claimed_until < now),
            ~is_behind,
        )
        .order_by(_d.event_seq)
        .limit(bindparam("limit", type_=Integer()))
    )


_DUE = _due_query()
