"""In-memory stand-ins for the room's seams (transport, writer, cluster feed):
unit tests of rooms and peers run without sockets or a database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from pycrdt import Doc

from collab.metrics import Metrics
from collab.protocol.codec import decode_message
from collab.rooms.peer import Peer, PeerLimits
from collab.rooms.room import Room
from collab.storage.store import AppendUpdate, WriteOp


class RecordingTransport:
    """A peer's transport that keeps what is sent (tests of peers without sockets)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    async def close(self, code: int, reason: str) -> None:
        pass


class RecordingSink:
    """The room's writer minus the database: it records every op and commits it at
    once, numbering log rows as the store does. `loop` is for tests that drive a
    room outside a running loop (hypothesis); by default the running one."""

    is_failing = False

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self.ops: list[WriteOp] = []  # barriers (None) are not recorded

    def submit(self, op: WriteOp | None) -> asyncio.Future[int | None]:
        if op is not None:
            self.ops.append(op)
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[int | None] = loop.create_future()
        future.set_result(len(self.ops) if isinstance(op, AppendUpdate) else None)
        return future

    def pending_for(self, document: str) -> int:
        return 0


class RecordingFeed:
    """A cluster feed that keeps what the room publishes."""

    def __init__(self) -> None:
        self.updates: list[tuple[bytes, int]] = []
        self.awareness: list[bytes] = []

    def publish_update(
        self, document: str, update: bytes, row_id: int, owners: Mapping[int, str] = {}
    ) -> None:
        self.updates.append((update, row_id))

    def publish_awareness(self, document: str, payload: bytes) -> None:
        self.awareness.append(payload)


def make_room() -> tuple[Room, RecordingSink, RecordingFeed, Peer]:
    """A room on fakes with one peer in it."""
    sink, feed = RecordingSink(), RecordingFeed()
    room = Room("doc", Doc(), sink, feed=feed)
    peer = Peer(RecordingTransport(), "doc", PeerLimits(), Metrics())
    room.add_peer(peer)
    return room, sink, feed, peer


def queued(peer: Peer) -> list[object]:
    """What the room has handed the peer (its send task is not running here)."""
    return [decode_message(m) for m in peer._outbox]


async def next_tick() -> None:
    """Presence changes go out at the end of the event-loop tick (coalesced)."""
    await asyncio.sleep(0)
    await asyncio.sleep(0)
