"""One connected client: its bounded outbox and its sender, the task that drains it.

Owns the only code that awaits a client's socket. The room calls `send()`, which
never blocks: it writes through the transport's `write_now` (when the edge gave
one) if the socket takes the message at once and nothing is queued before it,
or appends to the outbox or, when the outbox is
over its bound, closes this peer with `SLOW_CONSUMER`. The peer re-syncs when it reconnects, so
dropping its queue loses nothing; the others never wait for it.

Lifecycle: OPEN --close()--> CLOSING --finish()--> CLOSED, or straight to CLOSED
by `mark_gone()` when the socket went away. Only the peer's own methods change
its state; `close()` is idempotent; the first code and reason win.

A message of at least the gate's `min_bytes` (a big document's initial sync)
waits for a slot of the server-wide `BigSendGate` before it is handed to the
transport, so twenty joiners of a 50 MB document do not each hold a serialized
copy at once. While it waits, the sender keeps its client alive. It holds the
slot for a bounded time: a socket still backed up after the gate's drain timeout
gives the slot back before the message is written and waits without one.

Inbound limits that belong to one connection live here too: a token bucket for
its message rate, and the time it last sent anything (the janitor closes
connections idle past the limit). The bucket never refuses: it says how long the
edge waits before reading the connection's next message (backpressure: TCP flow
control makes the client wait too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from collab.errors import CloseCode
from collab.metrics import Metrics
from collab.protocol.codec import KEEPALIVE_MESSAGE
from collab.rooms.send_gate import BigSendGate
from collab.storage.attribution import ANONYMOUS, Author

logger = logging.getLogger(__name__)

ANONYMOUS_AUTHOR = Author(ANONYMOUS)


class Transport(Protocol):
    """What a peer needs from a connection (collab.api.socket's connection, or
    the ASGI adapter in collab.api.connection)."""

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


class PeerState(StrEnum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class PeerLimits:
    max_queue_messages: int = 100_000
    max_queue_bytes: int = 64 * 1024 * 1024
    keepalive_interval_s: float = 15.0
    close_timeout_s: float = 10.0
    # Inbound messages per second, sustained, and the burst above it; 0 = no limit.
    # Messages past them are not refused: reading the next one waits.
    rate_per_s: float = 0.0
    rate_burst: int = 0


class TokenBucket:
    """`rate` tokens a second up to `burst`; one message takes one token.

    Never refuses: a message taken from an empty bucket leaves it in debt, and
    `take` answers how long until the debt is paid, which is how long the caller
    waits before the next message. So `burst` messages pass at once and then one
    every 1/`rate` seconds, whatever the sender does."""

    __slots__ = ("_burst", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self._rate = rate
        self._burst = float(max(burst, 1))
        self._tokens = self._burst
        self._stamp = now

    def take(self, now: float, count: int = 1) -> float:
        """Take a token per message; the seconds to wait before the next message
        (0.0 if none)."""
        tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate) - count
        self._stamp = now
        self._tokens = tokens
        return 0.0 if tokens >= 0.0 else -tokens / self._rate


class Peer:
    """One client connection as the room sees it.

    The room hands it messages with `send()` (never blocks; overflow closes this
    peer with SLOW_CONSUMER); its sender (`run_sender`, a task the edge owns)
    writes them to the transport. The edge reports what it reads through
    `note_received()`, asks `rate_delay_s()` how long to wait before reading on,
    and ends the connection with `close()`, `mark_gone()` and `finish()`; nothing
    outside sets its state.
    """

    __slots__ = (
        "__weakref__",
        "_bucket",
        "_gate",
        "_is_sending",
        "_keepalive",
        "_limits",
        "_metrics",
        "_outbox",
        "_queued_bytes",
        "_sender",
        "_sent",
        "_sent_at_last_check",
        "_transport",
        "_wakeup",
        "_write_now",
        "author",
        "client_ids",
        "close_code",
        "close_reason",
        "document",
        "has_deferred_reply",
        "id",
        "is_read_only",
        "last_received",
        "state",
    )

    def __init__(
        self,
        transport: Transport,
        document: str,
        limits: PeerLimits,
        metrics: Metrics,
        *,
        is_read_only: bool = False,
        gate: BigSendGate | None = None,
        peer_id: int = 0,
        write_now: Callable[[bytes], bool] | None = None,
        author: Author = ANONYMOUS_AUTHOR,
    ) -> None:
        self.id = peer_id  # for the logs: the edge numbers its connections
        self.author = author  # whom its edits are attributed to (collab.rooms.authorship)
        self.document = document
        self.is_read_only = is_read_only  # its token grants read: the room applies no edit of it
        self.client_ids: set[int] = set()  # awareness ids this connection announced
        self.state = PeerState.OPEN
        self.close_code: int | None = None  # ours, or the client's if it closed first
        self.close_reason = ""
        self.has_deferred_reply = False  # a sync step 2 waiting for durability
        self.last_received = time.monotonic()
        self._transport = transport
        # Relays go straight to the socket when nothing is queued before them and
        # it takes them: no wake-up of the sender per message per recipient.
        self._write_now = write_now
        self._limits = limits
        self._metrics = metrics
        self._gate = gate
        self._bucket = (
            TokenBucket(limits.rate_per_s, limits.rate_burst, self.last_received)
            if limits.rate_per_s > 0
            else None
        )
        # None while empty and the sender idle: an empty deque holds a 600-byte
        # block, and most connections are idle.
        self._outbox: deque[bytes] | None = None
        self._queued_bytes = 0
        # The future the idle sender awaits; None while it is busy. Not an
        # asyncio.Event: an Event holds an empty deque (~760 bytes) for the life
        # of every connection, and most connections are idle.
        self._wakeup: asyncio.Future[None] | None = None
        self._sender: asyncio.Task[None] | None = None
        self._is_sending = False
        self._sent = 0  # messages written to the socket
        self._sent_at_last_check = 0
        self._keepalive: asyncio.TimerHandle | None = None

    def __repr__(self) -> str:
        return f"<Peer {self.id} {self.document!r} {self.state}>"

    @property
    def is_open(self) -> bool:
        return self.state is PeerState.OPEN

    def note_received(self) -> None:
        """Called for every inbound message: the idle clock."""
        self.last_received = time.monotonic()

    def rate_delay_s(self, messages: int = 1) -> float:
        """Charge `messages` to the rate limit: the seconds the edge waits before
        reading this connection's next message (0.0 within the burst, or with no
        limit). Edits that changed the document are not charged: storage paces
        them (the writer's backlog)."""
        if self._bucket is None:
            return 0.0
        return self._bucket.take(time.monotonic(), messages)

    def send(self, message: bytes) -> None:
        """Write `message` now if the transport can without waiting and nothing is
        queued before it, else queue it; never blocks. Overflow closes this peer,
        not the caller."""
        if self.send_copy(message):
            self._metrics.sent.count(message)

    def send_copy(self, message: bytes) -> bool:
        """`send` one of the copies of a message many peers are sent: True if it
        was written now, which the caller counts in the metrics (a broadcast
        counts its copies once, `Room.broadcast`: per copy, the counting was a
        few percent of fan-out's instructions); a queued copy is counted when
        the sender writes it."""
        if not self.is_open:
            return False
        outbox = self._outbox
        if (
            not outbox
            and not self._is_sending
            and self._write_now is not None
            and (self._gate is None or not self._gate.is_big(message))
            and self._write_now(message)
        ):
            self._sent += 1
            return True
        # A single message larger than the byte bound is still admitted on an empty
        # queue: a big initial sync must be able to reach a fresh client.
        if outbox is None:
            outbox = self._outbox = deque()
        if len(outbox) >= self._limits.max_queue_messages or (
            outbox and self._queued_bytes + len(message) > self._limits.max_queue_bytes
        ):
            logger.warning(
                "doc=%s peer=%d send queue overflow (%d messages, %d bytes): disconnecting",
                self.document,
                self.id,
                len(outbox),
                self._queued_bytes,
            )
            self._metrics.queue_overflows.inc()
            self.close(CloseCode.SLOW_CONSUMER, "send queue overflow: reconnect to re-sync")
            return False
        outbox.append(message)
        self._queued_bytes += len(message)
        if self._wakeup is not None:
            self._wake_sender()
        return False

    def close(self, code: CloseCode, reason: str) -> None:
        """Ask for this peer to be closed; the endpoint sends the close frame."""
        if not self.is_open:
            return
        self.state = PeerState.CLOSING
        self.close_code = code
        self.close_reason = reason
        self._outbox = None
        self._queued_bytes = 0
        self._wake_sender()
        if self._is_sending and self._sender is not None:
            # The sender is parked on a backed-up socket or on the send gate; it
            # would never see the request.
            self._sender.cancel()

    def mark_gone(self, client_code: int | None = None) -> None:
        """The socket went away: no close frame can be sent any more. Keeps our
        close code, or else the client's (`client_code`), for the log."""
        self.state = PeerState.CLOSED
        if self.close_code is None:
            self.close_code = client_code

    async def run_sender(self) -> None:
        """Drain the outbox until the peer closes.

        Keep-alives come from one timer per peer that re-arms itself every
        interval, not from a timeout around each wait: a busy peer wakes up
        thousands of times a second, and a timeout per wake-up costs a timer each."""
        self._sender = asyncio.current_task()
        loop = asyncio.get_running_loop()
        self._keepalive = loop.call_later(self._keepalive_check_s, self._keepalive_due)
        try:
            while self.is_open:
                outbox = self._outbox
                if not outbox:
                    self._outbox = None
                    self._wakeup = loop.create_future()
                    await self._wakeup
                    continue
                message = outbox.popleft()
                self._queued_bytes -= len(message)
                if self._gate is not None and self._gate.is_big(message):
                    await self._send_big(message, self._gate)
                else:
                    await self._send(message)
        finally:
            self._keepalive.cancel()

    def _wake_sender(self) -> None:
        wakeup, self._wakeup = self._wakeup, None
        if wakeup is not None and not wakeup.done():  # done: cancelled with the sender
            wakeup.set_result(None)

    def _keepalive_due(self) -> None:
        """Send a no-op if nothing went out since the last check; re-arm.

        The keep-alive itself is not taken as the next check's "something went
        out": that check sends nothing (the keep-alive is half an interval old),
        the one after sends again. An idle connection hears one keep-alive per
        interval, not one per check (which was twice as many writes and client
        wake-ups, most of an idle server's CPU)."""
        if not self.is_open:
            return
        if self._sent == self._sent_at_last_check and not self._outbox:
            self.send(KEEPALIVE_MESSAGE)
        else:
            self._sent_at_last_check = self._sent
        self._keepalive = asyncio.get_running_loop().call_later(
            self._keepalive_check_s, self._keepalive_due
        )

    @property
    def _keepalive_check_s(self) -> float:
        # Checking every half interval bounds the silence by one interval: a
        # message sent just after a check is followed by a keep-alive at most
        # two checks later.
        return self._limits.keepalive_interval_s / 2

    async def _send(self, message: bytes) -> None:
        # The hot path: straight to the transport (no extra coroutine layer).
        self._is_sending = True
        try:
            await self._transport.send_bytes(message)
        finally:
            self._is_sending = False
        self._note_sent(message)

    async def _send_big(self, message: bytes, gate: BigSendGate) -> None:
        """Send `message` holding one of the gate's slots until it has drained."""
        self._is_sending = True
        try:
            while not await self._send_holding_slot(message, gate):
                # The socket took nothing while the slot was ours: wait until it
                # takes data again without holding one, then queue again.
                await self._write(KEEPALIVE_MESSAGE)
        finally:
            self._is_sending = False

    async def _send_holding_slot(self, message: bytes, gate: BigSendGate) -> bool:
        """Take a slot, send `message`, and keep the slot until it has drained or
        for `drain_timeout_s`. False if the socket was still backed up after that
        long, before any of `message` was written."""
        grant = gate.request(self.document)
        try:
            while not grant.done():
                await asyncio.wait((grant,), timeout=self._limits.keepalive_interval_s)
                if not grant.done():
                    # The wait can outlast y-websocket's 30 s liveness window, and the
                    # keep-alive timer only queues behind the message waiting here.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(gate.drain_timeout_s):
                            await self._write(KEEPALIVE_MESSAGE)
            try:
                async with asyncio.timeout(gate.drain_timeout_s):
                    # y-websocket counts only complete messages as signs of life, so
                    # its 30 s window must cover the whole transfer of the big one:
                    # restart it now.
                    await self._write(KEEPALIVE_MESSAGE)
                    # uvicorn's send waits until the socket's buffer is below its
                    # high-water mark, then writes without awaiting: cancelled while
                    # it waits, it has written nothing.
                    await self._write(message)
            except TimeoutError:
                return False
            # Once this small message is written, the big one has drained, and its
            # copy is gone. A client that does not read gives the slot back after
            # drain_timeout_s all the same.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(gate.drain_timeout_s):
                    await self._write(KEEPALIVE_MESSAGE)
            return True
        finally:
            gate.give_back(grant)

    async def _write(self, message: bytes) -> None:
        await self._transport.send_bytes(message)
        self._note_sent(message)

    def _note_sent(self, message: bytes) -> None:
        self._sent += 1
        self._metrics.sent.count(message)

    async def finish(self) -> None:
        """Send the requested close frame (bounded wait); the peer is CLOSED after."""
        if self.state is PeerState.CLOSED:
            return
        if self.close_code is None:
            self.close_code, self.close_reason = CloseCode.NORMAL, ""
        self.state = PeerState.CLOSED
        try:
            async with asyncio.timeout(self._limits.close_timeout_s):
                await self._transport.close(self.close_code, self.close_reason)
        except TimeoutError:
            logger.info("doc=%s peer=%d close frame not delivered in time", self.document, self.id)
        except Exception as exc:  # task boundary: the socket is already gone
            logger.debug("doc=%s peer=%d close failed: %r", self.document, self.id, exc)
