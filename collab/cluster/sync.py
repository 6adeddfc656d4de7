"""What this process does with what the other processes publish.

Owns the `BusListener` side of clustering: an update another process made
durable is applied to the live room (relayed to its peers, not stored again);
awareness from another process is tagged with it; a process whose heartbeat
expired has its clients' presence removed (never merely because Redis was
gone: the bus judges liveness only once heartbeats are observable again); a
deletion elsewhere closes the room.

Catching up from storage (the log is the source of truth) is what makes the
fan-out lossless: whenever the bus cannot vouch for having delivered
everything - a trimmed stream, a Redis restart, an entry that would not apply,
a dead process that may have committed without publishing - the document is
queued here and one task reloads it and applies only what the room lacks.
The bus calls in synchronously and never waits on a room.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from collab.metrics import Metrics
from collab.rooms.cluster_feed import ClusterFeed
from collab.rooms.registry import RoomRegistry

logger = logging.getLogger(__name__)


class ClusterSync:
    def __init__(self, registry: RoomRegistry, feed: ClusterFeed, metrics: Metrics) -> None:
        self._registry = registry
        self._feed = feed
        self._metrics = metrics
        self._due: dict[str, None] = {}  # documents to catch up, in order, once each
        self._wakeup = asyncio.Event()

    def on_update(
        self, document: str, update: bytes, row_id: int, owners: Mapping[int, str]
    ) -> None:
        room = self._registry.rooms.get(document)
        if room is None:
            return
        try:
            room.apply_remote(update, owners)
        except (ValueError, RuntimeError):
            logger.exception(
                "doc=%s log row %d from another process does not apply", document, row_id
            )
            self.on_catch_up(document)
            return
        self._metrics.cluster_updates_applied.inc()

    def on_awareness(self, document: str, process_id: str, payload: bytes) -> None:
        room = self._registry.rooms.get(document)
        if room is not None and not room.is_closed:
            room.presence.apply_from_process(process_id, payload)

    def on_awareness_query(self, document: str) -> None:
        """Another process loaded the document, or lost track of its stream (or
        this one did): announce who is here."""
        room = self._registry.rooms.get(document)
        if room is not None and (payload := room.presence.local_states(list(room.peers.values()))):
            self._feed.publish_awareness(document, payload)

    def on_deleted(self, document: str) -> None:
        self._registry.drop_deleted(document)

    def on_catch_up(self, document: str) -> None:
        if document in self._registry.rooms:
            self._due[document] = None
            self._wakeup.set()

    def on_process_gone(self, process_id: str) -> None:
        for room in list(self._registry.rooms.values()):
            room.presence.remove_process(process_id)
            # It may have committed updates it never got to publish.
            self.on_catch_up(room.name)

    def on_reconnected(self) -> None:
        for name in list(self._registry.rooms):
            self.on_awareness_query(name)

    async def run(self) -> None:
        """Catch queued documents up from storage, one at a time."""
        while True:
            while not self._due:
                self._wakeup.clear()
                await self._wakeup.wait()
            document = next(iter(self._due))
            del self._due[document]
            try:
                await self._registry.catch_up(document)
            except Exception:  # task boundary: try again later; the log keeps everything
                logger.exception("doc=%s catching up from storage failed; retrying", document)
                await asyncio.sleep(1.0)
                self.on_catch_up(document)
                continue
            self._metrics.cluster_catch_ups.inc()
            logger.info("doc=%s caught up from storage", document)
