"""The sending half of the Redis bus: an ordered, bounded queue of stream entries.

Owns what this process still has to tell the others. Rooms queue entries
without waiting (`queue` never blocks); one task sends them in order, in
pipelines of `XADD ... MAXLEN ~ N` (plus an expiry, so the streams of documents
nobody edits any more go away). While Redis is unreachable the queue is kept
and sent once it is back - an entry sent twice is applied twice, which changes
nothing. Past `max_queued_bytes` it is dropped instead, and the first thing
sent afterwards is a catch-up marker for every document that lost entries, so
the others reload those from storage (where everything published is already).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable

from collab.cluster.redis_driver import Redis, RedisError

logger = logging.getLogger(__name__)

# A stream nobody has written to for this long expires (an idle document).
STREAM_TTL_MS = 24 * 3600 * 1000
_BATCH = 500
_RETRY_MIN_S = 0.05
_RETRY_MAX_S = 2.0
CATCH_UP = b"c"  # the entry type of a catch-up marker


class StreamPublisher:
    def __init__(
        self,
        redis: Redis,
        *,
        origin: bytes,
        document_prefix: str,
        max_entries: int,
        max_queued_bytes: int,
        on_error: Callable[[str, BaseException], None],
    ) -> None:
        self._redis = redis
        self._origin = origin
        self._document_prefix = document_prefix
        self._max_entries = max_entries
        self._max_queued_bytes = max_queued_bytes
        self._on_error = on_error
        self._outbox: deque[tuple[str, dict[bytes, bytes], int]] = deque()
        self._bytes = 0
        self._generation = 0  # bumped when the queue is dropped
        self._ready = asyncio.Event()
        self._dropped: set[str] = set()  # stream keys whose queued entries were dropped
        self._expiry_renewed: dict[str, float] = {}  # stream key -> when (monotonic)

    def queue(self, key: str, fields: dict[bytes, bytes], *, max_entries: int = 0) -> None:
        """Queue one entry for stream `key` (capped at `max_entries`, or the default)."""
        fields[b"o"] = self._origin
        size = sum(len(v) for v in fields.values())
        if self._bytes + size > self._max_queued_bytes:
            # Redis has been away too long: keep memory bounded (see the docstring).
            self._dropped.update(
                k for k, _, _ in self._outbox if k.startswith(self._document_prefix)
            )
            self._outbox.clear()
            self._bytes = 0
            self._generation += 1
            self._on_error(
                "publish", OverflowError("publish queue full: dropped, catch-up follows")
            )
        self._outbox.append((key, fields, max_entries or self._max_entries))
        self._bytes += size
        self._ready.set()

    def _keys_to_renew(self, batch: list[tuple[str, dict[bytes, bytes], int]]) -> set[str]:
        """Streams whose expiry was not renewed lately (once a minute is plenty for
        a TTL of a day; renewing with every entry would double the commands)."""
        now = time.monotonic()
        if len(self._expiry_renewed) > 100_000:
            self._expiry_renewed.clear()
        keys = {key for key, _, _ in batch if now - self._expiry_renewed.get(key, -60.0) >= 60.0}
        self._expiry_renewed.update(dict.fromkeys(keys, now))
        return keys

    async def run(self) -> None:
        delay_s = _RETRY_MIN_S
        while True:
            await self._ready.wait()
            try:
                await self.flush()
            except (RedisError, OSError) as exc:
                self._on_error("publish", exc)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, _RETRY_MAX_S)
                continue
            delay_s = _RETRY_MIN_S

    async def flush(self) -> None:
        """Send everything queued, in order (raises if Redis fails; nothing is lost)."""
        for key in sorted(self._dropped):
            marker = {b"t": CATCH_UP, b"o": self._origin}
            self._outbox.appendleft((key, marker, self._max_entries))
        self._dropped.clear()
        while self._outbox:
            generation = self._generation
            batch = [self._outbox[i] for i in range(min(len(self._outbox), _BATCH))]
            async with self._redis.pipeline(transaction=False) as pipe:
                for key, fields, max_entries in batch:
                    pipe.xadd(key, fields, maxlen=max_entries, approximate=True)  # type: ignore[arg-type]
                for key in self._keys_to_renew(batch):
                    pipe.pexpire(key, STREAM_TTL_MS)
                await pipe.execute()
            # Sent: only now do the entries leave the queue (a failed send is
            # retried whole) - unless the queue was dropped meanwhile.
            if generation != self._generation:
                continue
            for _ in batch:
                _, fields, _ = self._outbox.popleft()
                self._bytes -= sum(len(v) for v in fields.values())
        self._ready.clear()
