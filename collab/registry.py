"""The rooms of this process: single-flight load, unload, compaction scheduling.

Owns `rooms` (loaded documents) and the in-flight loads. Concurrent first joins
of one document share one load. The janitor's pass is synchronous, so nothing
can change under it: a room is unloaded only when it has no peers, has been
empty for the grace period, is compacted, and has no write pending — a room
whose writes are failing therefore stays in memory.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pycrdt import Doc

from collab.errors import CloseCode, DocumentNotFound
from collab.peer import Peer
from collab.room import PresentUser, Room
from collab.store import DeleteDocument, DocumentStore, StoredDocument
from collab.writer import UpdateWriter

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    grace_s: float = 30.0
    compact_after_updates: int = 1000
    compact_after_s: float = 300.0
    janitor_interval_s: float = 1.0
    # Compactions within this long of the newest automatic version replace it.
    auto_version_window_s: float = 300.0


def build_doc(stored: StoredDocument, document: str) -> Doc:
    """Snapshot, then each log entry after it. Applying to a Doc is linear;
    pycrdt's merge_updates is not (see the README's storage notes)."""
    doc: Doc = Doc()
    with doc.transaction():
        for update in ([stored.snapshot] if stored.snapshot else []) + stored.updates:
            try:
                doc.apply_update(update)
            except ValueError:
                # Only the writer stores updates, and only ones the Doc accepted; a
                # corrupt row is reported loudly and the rest of the document kept.
                logger.error("doc=%s skipped a stored update that does not decode", document)
    return doc


class RoomRegistry:
    def __init__(
        self,
        store: DocumentStore,
        writer: UpdateWriter,
        policy: LifecyclePolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rooms: dict[str, Room] = {}
        self._store = store
        self._writer = writer
        self._policy = policy
        self._clock = clock
        self._loading: dict[str, asyncio.Task[Room]] = {}
        # Deletions in flight: nothing may load the document until they commit, or a
        # join would load the old rows and its next snapshot would write them back.
        self._deleting: dict[str, asyncio.Future[None]] = {}
        self.loads = 0  # documents loaded from storage, for tests and introspection

    async def join(self, name: str, peer: Peer) -> Room:
        while True:
            room = self.rooms.get(name) or await self._load_once(name)
            # The janitor or a delete may have closed it while we awaited the load.
            if not room.is_closed:
                room.add_peer(peer)
                return room
            await asyncio.sleep(0)  # let whoever closed it finish removing it

    async def open_room(self, name: str) -> Room:
        """The live room of an existing document, loading it if needed (no peer joins).

        Version operations go through the room even when nobody is connected, so
        that a snapshot always covers exactly the log entries it contains."""
        while True:
            room = self.rooms.get(name)
            if room is None:
                if await self._store.document_info(name) is None:
                    raise DocumentNotFound(name)
                room = await self._load_once(name)
            if not room.is_closed:
                if not room.peers:
                    room.empty_since = self._clock()  # a fresh grace period
                return room
            await asyncio.sleep(0)

    async def exists(self, name: str) -> bool:
        return name in self.rooms or await self._store.document_info(name) is not None

    def leave(self, room: Room, peer: Peer) -> None:
        room.remove_peer(peer)

    def live_connections(self, name: str) -> int:
        room = self.rooms.get(name)
        return len(room.peers) if room else 0

    def present_users(self, name: str) -> list[PresentUser]:
        room = self.rooms.get(name)
        return room.present_users() if room else []

    async def _load_once(self, name: str) -> Room:
        task = self._loading.get(name)
        if task is None:
            task = asyncio.create_task(self._load(name), name=f"load {name}")
            self._loading[name] = task
            task.add_done_callback(lambda _: self._loading.pop(name, None))
        # shield: one joiner giving up (disconnecting) must not cancel the others' load
        return await asyncio.shield(task)

    async def _wait_for_deletion(self, name: str) -> None:
        deleting = self._deleting.get(name)
        if deleting is not None:
            await asyncio.shield(deleting)

    async def _load(self, name: str) -> Room:
        await self._wait_for_deletion(name)
        stored = await self._store.load(name)
        room = self.rooms.get(name)
        if room is not None:  # loaded while we awaited (e.g. after a delete)
            return room
        doc = build_doc(stored, name)
        room = Room(name, doc, self._writer, clock=self._clock)
        self.rooms[name] = room
        self.loads += 1
        logger.info(
            "doc=%s loaded (snapshot: %s, log entries: %d)",
            name,
            "yes" if stored.snapshot else "no",
            len(stored.updates),
        )
        return room

    async def read_state(self, name: str) -> bytes | None:
        """The document's full state as one update, or None if it does not exist."""
        await self._wait_for_deletion(name)
        room = self.rooms.get(name)
        if room is not None:
            state = room.doc.get_update()
            if self._writer.pending_for(name):
                # Show nothing that is not durable yet: wait for what `state` contains.
                await self._writer.flush()
            return state
        stored = await self._store.load(name)
        if stored.is_empty:
            return None
        return build_doc(stored, name).get_update()

    async def delete(self, name: str) -> bool:
        """Close the document's clients (4410) and remove all its data."""
        await self._wait_for_deletion(name)
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._deleting[name] = done
        try:
            loading = self._loading.get(name)
            if loading is not None:
                await asyncio.wait([loading])
            room = self.rooms.pop(name, None)
            if room is not None:
                room.close(CloseCode.DOCUMENT_DELETED, "document deleted")
            elif await self._store.document_info(name) is None:
                return False
            await self._writer.submit(DeleteDocument(name))
            logger.info("doc=%s deleted", name)
            return True
        finally:
            del self._deleting[name]
            done.set_result(None)

    # -- janitor -------------------------------------------------------------

    async def run_janitor(self) -> None:
        while True:
            await asyncio.sleep(self._policy.janitor_interval_s)
            try:
                self.sweep()
            except Exception:  # task boundary: one bad room must not stop the sweeps
                logger.exception("janitor sweep failed")

    def sweep(self) -> None:
        """Compact rooms that are due; unload idle ones that are safely on disk."""
        now = self._clock()
        policy = self._policy
        for name, room in list(self.rooms.items()):
            is_idle = not room.peers and room.empty_since is not None
            is_unload_due = is_idle and now - room.empty_since >= policy.grace_s  # type: ignore[operator]
            if room.is_compaction_due(
                now, policy.compact_after_updates, policy.compact_after_s
            ) or (is_unload_due and room.is_dirty):
                room.snapshot(merge_window_s=policy.auto_version_window_s)
                continue
            if is_unload_due and not self._writer.pending_for(name):
                del self.rooms[name]
                room.close(CloseCode.NORMAL, "unloaded")
                logger.info("doc=%s unloaded", name)

    async def close(self) -> None:
        """Graceful shutdown: close every peer, snapshot every changed room."""
        rooms, self.rooms = self.rooms, {}
        for room in rooms.values():
            room.close_peers(CloseCode.GOING_AWAY, "server shutting down")
            if room.is_dirty:
                room.snapshot(merge_window_s=self._policy.auto_version_window_s)
            room.close(CloseCode.GOING_AWAY, "server shutting down")
        await self._writer.flush()
