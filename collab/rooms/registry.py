"""The rooms of this process: single-flight load, unload, compaction scheduling.

Owns `rooms` (loaded documents) and the in-flight loads. Concurrent first joins
of one document share one load. The janitor's pass is synchronous, so nothing
can change under it: a room is unloaded only when it has no peers, has been
empty for the grace period, is compacted, and has no write pending — a room
whose writes are failing therefore stays in memory.

Limits that span rooms live here: connections in all and per document, and the
number of documents loaded (the least recently used idle ones are unloaded
first; if none is idle, the join is refused with 1013). Loading quarantines
stored rows that do not decode, so a document loads from whatever is valid.

A room whose write the database refused for good (or declined: its document
was deleted, perhaps by another process at the same instant) holds what
storage does not: it is closed with its peers at once (1011, or 4410) and
forgotten, so the next joiner loads the document from storage. A deletion
closes the room first, then stops its compaction, then deletes: nothing of
the room is written after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from collab.errors import AtCapacity, CloseCode, DocumentNotFound
from collab.metrics import Metrics
from collab.protocol.codec import decode_state_vector, encode_state_vector
from collab.rooms.cluster_feed import Cluster, NoCluster
from collab.rooms.commit_path import RoomClosed
from collab.rooms.compaction import Compactor, SnapshotNotSaved
from collab.rooms.loading import DocumentLoader, build_doc, catch_up, is_same_incarnation
from collab.rooms.peer import Peer
from collab.rooms.presence import PresentUser
from collab.rooms.room import Room
from collab.rooms.room_limits import RoomLimits
from collab.storage.store import DeleteDocument, DocumentDeleted, DocumentStore
from collab.storage.writer import UpdateWriter

logger = logging.getLogger(__name__)

# How often the janitor checks connections' silence: this many times per idle timeout.
_IDLE_CHECKS_PER_TIMEOUT = 20


@dataclass(frozen=True, slots=True)
class LifecyclePolicy:
    grace_s: float = 30.0
    compact_after_updates: int = 1000
    compact_after_s: float = 300.0
    compact_after_quiet_s: float = 30.0  # 0: quiet makes no compaction due
    janitor_interval_s: float = 1.0
    # Compactions within this long of the newest automatic version replace it.
    auto_version_window_s: float = 300.0
    # 0 disables each of these limits.
    idle_timeout_s: float = 600.0
    max_rooms: int = 10_000
    max_connections: int = 10_000
    max_connections_per_document: int = 1_000
    room_limits: RoomLimits = field(default_factory=RoomLimits)


class RoomRegistry:
    """Every room this process has loaded, by name.

    Joins load a document once however many arrive together (single flight);
    the janitor (`sweep`) closes idle peers, starts compactions and unloads idle
    rooms; `delete`, `read_state` and `open_room` serve the REST API and history.
    Never awaits a peer; awaits storage only on loads, deletes and shutdown.
    """

    def __init__(
        self,
        store: DocumentStore,
        writer: UpdateWriter,
        policy: LifecyclePolicy,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        cluster: Cluster | None = None,
    ) -> None:
        self.rooms: dict[str, Room] = {}
        self.connections = 0  # peers in all rooms
        self._store = store
        self._writer = writer
        self._policy = policy
        self._metrics = metrics or Metrics()
        self._clock = clock
        self._idle_checked_at = -math.inf  # the janitor's last check of silent connections
        self._cluster: Cluster = cluster or NoCluster()
        self._loader = DocumentLoader(store, writer, self._metrics)
        self.compactor = Compactor(
            self._loader,
            writer,
            self._metrics,
            auto_version_window_s=policy.auto_version_window_s,
        )
        self._loading: dict[str, asyncio.Task[Room]] = {}
        # Deletions in flight: nothing may load the document until they commit, or a
        # join would load the old rows and its next snapshot would write them back.
        self._deleting: dict[str, asyncio.Future[None]] = {}

    async def join(self, name: str, peer: Peer) -> Room:
        self._take_connection_slot()
        try:
            while True:
                room = self.rooms.get(name) or await self._load_once(name)
                # The janitor or a delete may have closed it while we awaited the load.
                if not room.is_closed:
                    break
                await asyncio.sleep(0)  # let whoever closed it finish removing it
            self._check_room_for_one_more(room)
        except BaseException:  # a refusal, a failed load, or the joiner cancelled
            self.connections -= 1
            raise
        room.add_peer(peer)
        return room

    def join_loaded(self, name: str, peer: Peer) -> Room | None:
        """`join` without awaiting, when the document is loaded (the common case:
        a room with people in it): the room, None if it is not loaded (then
        `join`). The same limits, refused with the same `AtCapacity`."""
        room = self.rooms.get(name)
        if room is None or room.is_closed:
            return None
        self._take_connection_slot()
        try:
            self._check_room_for_one_more(room)
        except AtCapacity:
            self.connections -= 1
            raise
        room.add_peer(peer)
        return room

    def _take_connection_slot(self) -> None:
        # The slot is taken before a load is awaited, so that concurrent first
        # joins (each awaiting a load) cannot all pass the check together; given
        # back if the join fails. `leave` gives back a joined peer's.
        limit = self._policy.max_connections
        if limit and self.connections >= limit:
            self._metrics.refused("connections")
            raise AtCapacity(f"server full: {limit} connections; retry later")
        self.connections += 1

    def _check_room_for_one_more(self, room: Room) -> None:
        limit = self._policy.max_connections_per_document
        if limit and len(room.peers) >= limit:
            self._metrics.refused("connections_per_document")
            raise AtCapacity(f"document full: {limit} connections; retry later")

    async def open_room(self, name: str, *, create: bool = False) -> Room:
        """The live room of an existing document, loading it if needed (no peer joins).

        Version operations go through the room even when nobody is connected, so
        that a snapshot always covers exactly the log entries it contains.
        `create`: a document that does not exist yet gets an empty room (as a
        first joiner's does); it is stored with its first edit."""
        while True:
            room = self.rooms.get(name)
            if room is None:
                if not create and await self._store.document_info(name) is None:
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
        if peer.id in room.peers:
            self.connections -= 1
        room.remove_peer(peer)

    def live_connections(self, name: str) -> int:
        room = self.rooms.get(name)
        return len(room.peers) if room else 0

    def present_users(self, name: str) -> list[PresentUser]:
        room = self.rooms.get(name)
        return room.presence.present_users() if room else []

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
        await self._make_room_for_one()
        # The stream position first: whatever was published before it is in
        # storage by now; whatever comes after is read from the stream (what is
        # in both is applied twice, which changes nothing).
        position = await self._cluster.stream_position(name)
        loaded = await self._loader.load(name)
        room = self.rooms.get(name)
        if room is not None:  # loaded while we awaited (e.g. after a delete)
            return room
        stored = loaded.stored
        room = Room(
            name,
            loaded.doc,
            self._writer,
            limits=self._policy.room_limits,
            size_bytes=len(stored.snapshot or b"") + sum(map(len, stored.updates)),
            tombstone=stored.tombstone,
            clock=self._clock,
            feed=self._cluster,
            row_ids=loaded.row_ids,
            snapshot_seq=stored.snapshot_seq,
            incarnation=stored.incarnation,
            on_write_refused=self._drop_refused,
            metrics=self._metrics,
            owners=stored.owners,
        )
        self.rooms[name] = room
        self._cluster.follow(name, position)
        self._metrics.documents_loaded.inc()
        logger.info(
            "doc=%s loaded (snapshot: %s, log entries: %d)",
            name,
            "yes" if stored.snapshot else "no",
            len(stored.updates),
        )
        return room

    async def catch_up(self, name: str) -> None:
        """Bring the live room up to date with storage (messages from the other
        processes may have been lost); what it lacked is relayed to its peers."""
        if name not in self.rooms:
            return
        loaded = await self._loader.load(name)
        room = self.rooms.get(name)
        if room is None or room.is_closed:
            return
        if not is_same_incarnation(room, loaded):
            # Deleted by another process, and we missed its message.
            deleted = DocumentDeleted(name, room.incarnation, loaded.stored.incarnation)
            self._drop_refused(room, deleted)
            return
        catch_up(room, loaded)

    async def _make_room_for_one(self) -> None:
        """Unload least recently used idle documents to stay under `max_rooms`."""
        limit = self._policy.max_rooms
        if not limit or len(self.rooms) < limit:
            return
        idle = sorted(
            (room for room in self.rooms.values() if not room.peers),
            key=lambda room: room.empty_since or 0.0,
        )
        for room in idle:
            if len(self.rooms) < limit:
                return
            if room.ledger.is_dirty:
                # If not saved, the log keeps its rows; if closed or deleted
                # meanwhile, it is going away anyway.
                with contextlib.suppress(SnapshotNotSaved, RoomClosed, DocumentNotFound):
                    await self.compactor.snapshot(room)
            if room.peers or room.has_pending_edits or room.is_closed:
                continue  # someone joined meanwhile, or it is going away anyway
            self._unload(room)
            self._metrics.rooms_evicted.inc()
        if len(self.rooms) >= limit:
            self._metrics.refused("rooms")
            raise AtCapacity(f"{limit} documents loaded and none idle; retry later")

    def _unload(self, room: Room) -> None:
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            self._cluster.unfollow(room.name)
        room.close(CloseCode.NORMAL, "unloaded")
        logger.info("doc=%s unloaded", room.name)

    def _drop_refused(self, room: Room, refusal: Exception) -> None:
        """A write of `room` was refused for good, or its document is gone: close
        it and its peers, and forget it (the next joiner loads from storage)."""
        if isinstance(refusal, DocumentDeleted):
            code, reason = CloseCode.DOCUMENT_DELETED, "document deleted"
        else:
            code = CloseCode.INTERNAL_ERROR
            reason = "the database refused an edit: reconnect to load the saved document"
        if self.rooms.get(room.name) is room:
            del self.rooms[room.name]
            self._cluster.unfollow(room.name)
        room.close(code, reason)
        logger.info("doc=%s room closed (%d) and forgotten: %s", room.name, code, reason)

    async def run_storage_watch(self) -> None:
        """Each time commits start failing, the clients whose edits are stuck in
        the failing writes are told (4503). Runs until cancelled."""
        while True:
            await self._writer.wait_until_failing()
            for room in self.rooms.values():
                if room.has_pending_edits:
                    room.close_peers(
                        CloseCode.STORAGE_UNAVAILABLE,
                        "storage is failing: edits are not being saved",
                    )
            await self._writer.wait_until_recovered()

    async def read_state(self, name: str) -> bytes | None:
        """The document's full state as one update, or None if it does not exist."""
        await self._wait_for_deletion(name)
        room = self.rooms.get(name)
        if room is not None:
            state = room.doc.get_update()
            if not room.has_pending_edits:
                return state
            # Show nothing that is not durable yet: wait for what `state` contains.
            room.submit_edits()
            await self._writer.flush()
            if not room.is_closed:
                return state
            # Closed meanwhile (a write of it was refused, or it was deleted):
            # `state` may hold what is not stored. What is stored is the answer.
            await self._wait_for_deletion(name)
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
                self._cluster.unfollow(name)
                # Closed first: a snapshot waiting for the room's writes (a save, a
                # restore) finds it closed and submits nothing after the deletion.
                room.close(CloseCode.DOCUMENT_DELETED, "document deleted")
                await self.compactor.cancel(name)
                clocks = dict(room.tombstone_clocks)
                state_vector = room.doc.get_state()
            else:
                if await self._store.document_info(name) is None:
                    return False
                stored = await self._store.load(name)
                clocks = decode_state_vector(stored.tombstone or b"\x00")
                state_vector = build_doc(stored, name).get_state()
            for client_id, clock in decode_state_vector(state_vector).items():
                clocks[client_id] = max(clock, clocks.get(client_id, 0))
            await self._writer.submit(DeleteDocument(name, encode_state_vector(clocks)))
            self._cluster.publish_deleted(name)
            logger.info("doc=%s deleted", name)
            return True
        finally:
            del self._deleting[name]
            done.set_result(None)

    def drop_deleted(self, name: str) -> None:
        """Another process deleted the document: close its clients here too (4410)."""
        room = self.rooms.pop(name, None)
        if room is not None:
            self._cluster.unfollow(name)
            room.close(CloseCode.DOCUMENT_DELETED, "document deleted")
            logger.info("doc=%s deleted by another process: room closed", name)

    # -- janitor -------------------------------------------------------------

    async def run_janitor(self) -> None:
        while True:
            await asyncio.sleep(self._policy.janitor_interval_s)
            try:
                self.sweep()
            except Exception:  # task boundary: one bad room must not stop the sweeps
                logger.exception("janitor sweep failed")

    def sweep(self) -> None:
        """Compact rooms that are due; unload idle ones that are safely on disk;
        close connections that have sent nothing for the idle timeout."""
        now = self._clock()
        policy = self._policy
        idle_now = self._idle_check_due()
        for name, room in list(self.rooms.items()):
            if idle_now is not None and room.peers:
                room.close_idle_peers(idle_now, policy.idle_timeout_s)
            if self.compactor.is_compacting(name):
                continue
            is_idle = not room.peers and room.empty_since is not None
            is_unload_due = is_idle and now - room.empty_since >= policy.grace_s  # type: ignore[operator]
            ledger = room.ledger
            if (
                ledger.is_compaction_due(now, policy.compact_after_updates, policy.compact_after_s)
                or ledger.is_quiet_for(now, policy.compact_after_quiet_s)
                or (is_unload_due and ledger.is_dirty)
            ):
                self.compactor.start(room)
                continue
            if is_unload_due and not room.has_pending_edits:
                self._unload(room)

    def _idle_check_due(self) -> float | None:
        """The monotonic time to check every connection's silence against, when a
        check is due: every twentieth of the idle timeout (at most once a sweep),
        not every sweep. A check looks at every connection of every room: at
        every sweep (once a second) it was a third of the janitor's time, which
        holds the event loop, on a server with thousands of connections; now a
        silent connection is closed at most a twentieth of the timeout late."""
        timeout_s = self._policy.idle_timeout_s
        now = time.monotonic()  # the peers' clock (`Peer.last_received`)
        if not timeout_s or now - self._idle_checked_at < timeout_s / _IDLE_CHECKS_PER_TIMEOUT:
            return None
        self._idle_checked_at = now
        return now

    async def close(self) -> None:
        """Graceful shutdown: close every peer, snapshot every changed room (one
        attempt each: a snapshot another process got in first leaves the rows in
        the log, where the next load finds them)."""
        await self.compactor.close()
        rooms, self.rooms = self.rooms, {}
        for room in rooms.values():
            self._cluster.unfollow(room.name)
            room.close_peers(CloseCode.SERVICE_RESTART, "server restarting")
            if room.ledger.is_dirty:
                self.compactor.submit_snapshot(
                    room, room.capture(), merge_window_s=self._policy.auto_version_window_s
                )
            room.close(CloseCode.SERVICE_RESTART, "server restarting")
        await self._writer.flush()
