"""The events task: publish what the outbox holds, deliver it to every subscriber.

One `EventDispatcher` per server process, run by the runtime as its own task:
nothing here is on the editing path, and nothing on the editing path waits for
it (a change's transaction only writes its outbox rows, see
collab.storage.outbox_writes). Each pass:

1. publishes: numbers new events and turns quiet pending changes into
   `document.updated` (collab.storage.outbox), which also fans them out to the
   subscriptions;
2. starts delivering what is due, at most `max_in_flight` at a time, each in
   its own task beside the passes: claims the row in the database first (so in
   a cluster one process delivers it), POSTs it signed (collab.webhooks.signing),
   then deletes the row, or counts the failure and makes it due again after an
   exponential backoff, or parks it after `max_attempts`;
3. now and then forgets old delivered events (`retention_s`).

At least once: a row is deleted only after its receiver answered 2xx; a process
killed mid-delivery leaves a claim that lapses, and another pass delivers again.
Receivers should therefore ignore an `X-Collab-Event-Id` they have seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass

from collab import __version__
from collab.metrics import Metrics
from collab.storage.deliveries import Delivery, DeliveryQueue
from collab.storage.outbox import EventOutbox
from collab.webhooks.http_post import DeliveryFailed, post
from collab.webhooks.signing import SIGNATURE_HEADER, signature_header

logger = logging.getLogger(__name__)

_PRUNE_INTERVAL_S = 60.0


@dataclass(frozen=True, slots=True)
class WebhookPolicy:
    secret: str  # for subscriptions without their own ("": none)
    max_attempts: int = 8
    retry_base_s: float = 1.0  # the first retry's delay; each next one doubles...
    retry_max_s: float = 600.0  # ...up to this
    timeout_s: float = 10.0
    debounce_s: float = 2.0
    max_delay_s: float = 30.0
    poll_interval_s: float = 0.5
    retention_s: float = 7 * 86400.0
    max_in_flight: int = 16

    def retry_delay_s(self, failed_attempts: int) -> float:
        """How long after its `failed_attempts`-th failure a delivery is tried again."""
        return float(min(self.retry_base_s * 2 ** (failed_attempts - 1), self.retry_max_s))

    @property
    def claim_s(self) -> float:
        """How long a claim holds: past any one attempt, with room to record it."""
        return 2 * self.timeout_s + 5.0


class EventDispatcher:
    def __init__(
        self,
        outbox: EventOutbox,
        queue: DeliveryQueue,
        policy: WebhookPolicy,
        metrics: Metrics,
        *,
        owner: str,
        wake: asyncio.Event | None = None,
        live_owners: Callable[[], Awaitable[Collection[str]]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._outbox = outbox
        self._queue = queue
        self._policy = policy
        self._metrics = metrics
        self._owner = owner  # this process's lease id: who holds a claim
        # The lease ids of the servers still running (collab.storage.leases): the
        # claims of any other are given back, at start-up and with each prune.
        self._live_owners = live_owners
        self._clock = clock
        self._pruned_at = 0.0
        # (subscription id, event seq) of the deliveries this process is making.
        self._in_flight: set[tuple[int, int]] = set()
        # Set when a pass should come now: a delivery ended (its queue's next may
        # be due), or this process committed events (`wake`, the store's
        # `events_committed`). Other processes' commits are found by polling.
        self._wake = wake or asyncio.Event()

    async def run(self) -> None:
        """Pass after pass until cancelled. Deliveries run beside the passes, in a
        task group this task owns, so a slow subscriber holds up only its own
        queue; a pass comes as soon as one ends or this process commits an
        event, and at least every `poll_interval_s` (other processes' events,
        pending changes going quiet, retries coming due, recovery)."""
        async with asyncio.TaskGroup() as deliveries:
            while True:
                self._wake.clear()
                try:
                    is_busy = await self._pass(deliveries)
                except Exception:  # task boundary: the rows stay; the next pass retries
                    logger.exception("events pass failed")
                    is_busy = False
                if not is_busy:
                    # Not `wait_for`: on Python 3.11 it swallows a cancellation that
                    # comes as the wake does (it returns the result), and this loop
                    # then outlives the shutdown that cancelled it.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self._policy.poll_interval_s):
                            await self._wake.wait()

    async def _pass(self, deliveries: asyncio.TaskGroup) -> bool:
        """Publish, start the deliveries that are due; whether it did anything."""
        policy = self._policy
        published = released = 0
        now = self._clock()
        if now - self._pruned_at >= _PRUNE_INTERVAL_S:
            # First, so what a dead server held is delivered in this very pass.
            self._pruned_at = now
            released = await self._release_dead_claims()
            await self._outbox.prune(older_than_s=policy.retention_s)
            self._metrics.webhook_parked.set(await self._queue.count_parked())
        if await self._outbox.has_work(
            debounce_s=policy.debounce_s, max_delay_s=policy.max_delay_s
        ):
            published = await self._outbox.publish(
                debounce_s=policy.debounce_s, max_delay_s=policy.max_delay_s
            )
            self._metrics.events_published.inc(published)
        started = 0
        free = policy.max_in_flight - len(self._in_flight)
        if free > 0:
            for delivery in await self._queue.due(free + len(self._in_flight)):
                key = (delivery.subscription.id, delivery.event.seq)
                if key in self._in_flight or started == free:
                    continue
                self._in_flight.add(key)
                deliveries.create_task(self._deliver(delivery, key))
                started += 1
        return bool(published or started or released)

    async def _release_dead_claims(self) -> int:
        """A server killed mid-delivery left its claims behind: its events go out
        now, not once the claims expire (the first pass after a restart does this);
        how many were released."""
        if self._live_owners is None:
            return 0
        live = {*await self._live_owners(), self._owner}
        released = await self._queue.release_claims(keep=live)
        if released:
            logger.info("released %d webhook deliveries claimed by servers that are gone", released)
        return released

    async def _deliver(self, delivery: Delivery, key: tuple[int, int]) -> None:
        try:
            await self._claim_and_deliver(delivery)
        except Exception:  # task boundary: the row stays; a pass takes it up again
            logger.exception(
                "doc=%s event %d to subscription %d: delivery failed",
                delivery.event.document,
                delivery.event.seq,
                delivery.subscription.id,
            )
        finally:
            self._in_flight.discard(key)
            self._wake.set()

    async def _claim_and_deliver(self, delivery: Delivery) -> None:
        if not await self._queue.claim(delivery, self._owner, self._policy.claim_s):
            return  # another process has it
        event, subscription = delivery.event, delivery.subscription
        try:
            await self._post(delivery)
        except DeliveryFailed as exc:
            await self._failed(delivery, str(exc))
            return
        except asyncio.CancelledError:
            # Shutting down: hand the row back now rather than when the claim
            # lapses (it may well have arrived: at least once).
            with contextlib.suppress(Exception):
                await self._queue.release(delivery, self._owner)
            raise
        await self._queue.delivered(delivery)
        self._metrics.webhook_deliveries.labels("delivered").inc()
        self._metrics.webhook_latency.observe(max(0.0, self._clock() - event.occurred_at))
        logger.debug(
            "doc=%s event %d (%s) delivered to subscription %d",
            event.document,
            event.seq,
            event.type,
            subscription.id,
        )

    async def _post(self, delivery: Delivery) -> None:
        secret = delivery.subscription.secret or self._policy.secret
        if not secret:
            raise DeliveryFailed("no signing secret (COLLAB_WEBHOOK_SECRET)")
        body = delivery.event.body()
        headers = {
            "User-Agent": f"collab/{__version__}",
            "X-Collab-Event-Id": str(delivery.event.seq),
            "X-Collab-Event-Type": delivery.event.type.value,
            "X-Collab-Delivery-Attempt": str(delivery.attempts + 1),
            SIGNATURE_HEADER: signature_header(secret, int(self._clock()), body),
        }
        await post(delivery.subscription.url, body, headers, timeout_s=self._policy.timeout_s)

    async def _failed(self, delivery: Delivery, error: str) -> None:
        attempts = delivery.attempts + 1
        is_last = attempts >= self._policy.max_attempts
        retry_at = None if is_last else self._clock() + self._policy.retry_delay_s(attempts)
        await self._queue.failed(delivery, self._owner, error=error, retry_at=retry_at)
        outcome = "parked" if is_last else "failed"
        self._metrics.webhook_deliveries.labels(outcome).inc()
        if is_last:
            self._metrics.webhook_parked.set(await self._queue.count_parked())
        log = logger.warning if is_last else logger.info
        log(
            "doc=%s event %d to subscription %d (%s) failed, attempt %d: %s%s",
            delivery.event.document,
            delivery.event.seq,
            delivery.subscription.id,
            delivery.subscription.url,
            attempts,
            error,
            "; parked" if is_last else "",
        )
