"""One encoded sync step 2, shared by every joiner that asks for the same thing.

Answering a client's step 1 encodes the part of the Doc its state vector lacks;
for a fresh client (empty state vector) of a 50 MB document that is 50 MB of new
bytes, and again for each joiner: twenty joining at once held twenty copies in
their outboxes (bench scenario `bigdoc`). The reply depends only on the Doc's
state and the state vector, so the room keeps the last big reply and hands the
same bytes object to every joiner asking with the same state vector, until the
Doc changes (the room calls `invalidate` from its transaction observer, which
sees every change) or nobody asked for `keep_s`: a cached reply costs a second
copy of the document, worth it only during a burst of joins.

It never decides whether a reply may be sent: the room still holds back a reply
that contains updates not yet durable, cached or not.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from prometheus_client import Counter

# Smaller replies are cheap to encode and to hold per joiner; not worth keeping.
DEFAULT_MIN_BYTES = 1 << 20
DEFAULT_KEEP_S = 10.0


class SyncReplyCache:
    """The last big step 2 and the state vector it answers."""

    def __init__(
        self,
        shared: Counter,
        *,
        min_bytes: int = DEFAULT_MIN_BYTES,
        keep_s: float = DEFAULT_KEEP_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min_bytes = min_bytes
        self._keep_s = keep_s
        self._clock = clock
        self._state_vector: bytes | None = None
        self._reply: bytes | None = None
        self._used_at = 0.0
        self._expiry: asyncio.TimerHandle | None = None
        self._shared = shared  # counts replies handed out without encoding

    def reply(self, state_vector: bytes, encode: Callable[[bytes], bytes]) -> bytes:
        """The step 2 answering `state_vector`: the cached one, or `encode`'s."""
        if self._reply is not None and state_vector == self._state_vector:
            self._used_at = self._clock()
            self._shared.inc()
            return self._reply
        reply = encode(state_vector)
        self.invalidate()
        if len(reply) >= self._min_bytes:
            self._keep(state_vector, reply)
        return reply

    def invalidate(self) -> None:
        """Forget the cached reply (the Doc changed, or the room closes)."""
        self._state_vector = self._reply = None
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def _keep(self, state_vector: bytes, reply: bytes) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop to expire it with (a synchronous caller): do not keep it
        self._state_vector, self._reply = state_vector, reply
        self._used_at = self._clock()
        self._expiry = loop.call_later(self._keep_s, self._expire)

    def _expire(self) -> None:
        idle_s = self._clock() - self._used_at
        if idle_s >= self._keep_s:
            self._expiry = None
            self.invalidate()
            return
        self._expiry = asyncio.get_running_loop().call_later(self._keep_s - idle_s, self._expire)
