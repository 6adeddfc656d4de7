"""A server-wide bound on how many big messages are on their way out at once.

Handing a message to the transport costs memory per connection beyond the bytes
the room shares: uvicorn serializes each frame into its own buffer (with
permessage-deflate, a compressed copy), and the event loop keeps whatever the
socket did not take until the client reads it. For the 50 MB initial sync of a
big document that is 16-50 MB per joiner, and twenty joining at once held all
their copies together (bench scenario `bigdoc`). So a peer's sender takes a
slot before it sends a message of at least `min_bytes`, and gives it back once
the message has drained from the transport's buffer: memory stays near
`slots` copies whatever the number of joiners, and since the copies are made one
after another on one event loop anyway, the joiners are not synced later.

Fairness and liveness: slots are granted in request order; a sender waiting for
one keeps its client alive (see `Peer`); a client that does not read keeps a slot
for at most `drain_timeout_s` (its copy stays buffered until it is disconnected,
but it cannot stall the others).

Owns no socket and never awaits: the peer's sender does the waiting.
"""

from __future__ import annotations

import asyncio
from collections import deque

DEFAULT_SLOTS = 2
DEFAULT_MIN_BYTES = 1 << 20
DEFAULT_DRAIN_TIMEOUT_S = 5.0


class BigSendGate:
    def __init__(
        self,
        *,
        slots: int = DEFAULT_SLOTS,
        min_bytes: int = DEFAULT_MIN_BYTES,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
    ) -> None:
        if slots < 1:
            raise ValueError("a send gate needs at least one slot")
        self.min_bytes = min_bytes
        self.drain_timeout_s = drain_timeout_s
        self._free = slots
        self._waiting: deque[asyncio.Future[None]] = deque()

    def __repr__(self) -> str:
        return f"<BigSendGate free={self._free} waiting={len(self._waiting)}>"

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def is_big(self, message: bytes) -> bool:
        return len(message) >= self.min_bytes

    def request(self) -> asyncio.Future[None]:
        """A future that resolves when the caller holds a slot; pass it to `give_back`."""
        grant: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._free and not self._waiting:
            self._free -= 1
            grant.set_result(None)
        else:
            self._waiting.append(grant)
        return grant

    def give_back(self, grant: asyncio.Future[None]) -> None:
        """Release the slot `grant` holds, or withdraw the request if not granted yet.
        Call it exactly once per `request`, whatever happened (a `finally`)."""
        if not grant.done() or grant.cancelled():
            grant.cancel()
            if grant in self._waiting:
                self._waiting.remove(grant)
            return
        while self._waiting:
            successor = self._waiting.popleft()
            if not successor.done():
                successor.set_result(None)  # the slot passes on; `_free` is unchanged
                return
        self._free += 1
