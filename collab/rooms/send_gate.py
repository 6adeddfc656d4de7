"""A server-wide bound on how many big messages are on their way out at once,
shared fairly between documents.

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

Fairness: a document holds at most `per_document` slots (one by default), and
free slots go round-robin between the documents that wait, each document's
requests in their order. So the joiners of one big document - however many,
however slow - never make a joiner of another document wait while a slot is
left, and when every slot is taken, the next free one goes to the document that
waited longest for its turn.

Liveness: a sender waiting for a slot keeps its client alive (see `Peer`); a
client that does not read keeps a slot for at most `drain_timeout_s` (its copy
stays buffered until it is disconnected, but it cannot stall the others).

Owns no socket and never awaits: the peer's sender does the waiting.
"""

from __future__ import annotations

import asyncio
from collections import deque

DEFAULT_SLOTS = 2
DEFAULT_PER_DOCUMENT = 1
DEFAULT_MIN_BYTES = 1 << 20
DEFAULT_DRAIN_TIMEOUT_S = 2.0


class BigSendGate:
    def __init__(
        self,
        *,
        slots: int = DEFAULT_SLOTS,
        per_document: int = DEFAULT_PER_DOCUMENT,
        min_bytes: int = DEFAULT_MIN_BYTES,
        drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S,
    ) -> None:
        if slots < 1 or per_document < 1:
            raise ValueError("a send gate needs at least one slot, and one per document")
        self.min_bytes = min_bytes
        self.drain_timeout_s = drain_timeout_s
        self._per_document = per_document
        self._free = slots
        self._held: dict[str, int] = {}  # document -> slots it holds
        # document -> its requests not granted yet; in turn order (round-robin:
        # a document served moves to the back)
        self._queues: dict[str, deque[asyncio.Future[None]]] = {}
        self._document_of: dict[asyncio.Future[None], str] = {}

    def __repr__(self) -> str:
        return f"<BigSendGate free={self._free} waiting={self.waiting} held={self._held}>"

    @property
    def waiting(self) -> int:
        return sum(len(queue) for queue in self._queues.values())

    def held_by(self, document: str) -> int:
        return self._held.get(document, 0)

    def is_big(self, message: bytes) -> bool:
        return len(message) >= self.min_bytes

    def request(self, document: str) -> asyncio.Future[None]:
        """A future that resolves when the caller holds a slot for `document`;
        pass it to `give_back`."""
        grant: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._document_of[grant] = document
        self._queues.setdefault(document, deque()).append(grant)
        self._grant_free_slots()
        return grant

    def give_back(self, grant: asyncio.Future[None]) -> None:
        """Release the slot `grant` holds, or withdraw the request if not granted yet.
        Call it exactly once per `request`, whatever happened (a `finally`)."""
        document = self._document_of.pop(grant, None)
        if document is None:
            return  # given back already
        if not grant.done() or grant.cancelled():
            grant.cancel()
            queue = self._queues.get(document)
            if queue is not None and grant in queue:
                queue.remove(grant)
                if not queue:
                    del self._queues[document]
            return
        self._held[document] -= 1
        if not self._held[document]:
            del self._held[document]
        self._free += 1
        self._grant_free_slots()

    def _grant_free_slots(self) -> None:
        while self._free:
            document = next(
                (d for d in self._queues if self._held.get(d, 0) < self._per_document), None
            )
            if document is None:
                return  # whoever waits already holds its share
            queue = self._queues.pop(document)  # re-inserted at the back: its turn is over
            grant = queue.popleft()
            if queue:
                self._queues[document] = queue
            if grant.done():  # cancelled by its owner, who did not withdraw it
                self._document_of.pop(grant, None)
                continue
            self._free -= 1
            self._held[document] = self._held.get(document, 0) + 1
            grant.set_result(None)
