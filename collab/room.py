"""One document: its Doc, its peers, awareness, and fan-out.

This is y-websocket's reference algorithm, kept readable:
join -> send sync step 1 and the current awareness states; answer step 1 with
step 2; every change to the Doc -> made durable -> relayed to every peer, the
sender included (y-websocket marks an edit saved on that echo); track the
awareness client ids each peer announced and broadcast their removal when it
leaves, so no ghost cursors remain.

Invariants:
- The hot path is synchronous: decode -> apply -> submit to the writer -> on
  commit, encode once -> append to each peer's outbox. The room never awaits a
  peer (a `Peer.send` never blocks) nor the database.
- Nothing leaves the room before it is durable: relays wait for the writer's
  future; a step 2 waits for the document's pending writes (a barrier).
- Every change to the Doc goes through `_on_transaction`, whether a client sent
  it or the server made it, so there is one path to storage and to the peers.
- Limits are checked before an update is applied: the document's size (an
  estimate, made exact by one encode only near the limit) and the history of a
  deleted incarnation (its tombstone) that an old client might try to bring back.
  While storage fails, an edit is still merged and queued (never lost, never
  relayed before it is durable) but its sender is told, with 4503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, NamedTuple, Protocol

from pycrdt import Awareness, Doc, TransactionEvent, get_state

from collab.content import text_preview
from collab.errors import (
    AwarenessTooLarge,
    CloseCode,
    DeletedHistory,
    DocumentTooLarge,
    InvalidAwareness,
    InvalidUpdate,
    ReadOnlyEdit,
    StorageUnavailable,
)
from collab.peer import Peer
from collab.protocol import (
    AuthMessage,
    AwarenessUpdate,
    Message,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    UnknownMessage,
    decode_state_vector,
    encode_awareness,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
)
from collab.restore import restore_doc
from collab.store import AppendUpdate, SaveSnapshot, SnapshotKind, WriteOp

logger = logging.getLogger(__name__)

_EMPTY_UPDATE = b"\x00\x00"
# Awareness states are whatever clients send; what the document list echoes is bounded.
_MAX_PRESENT_NAME_CHARS = 100
_MAX_PRESENT_COLOR_CHARS = 32


class PresentUser(NamedTuple):
    """A person in a document, as their editor announces them."""

    name: str
    color: str


class UpdateSink(Protocol):
    """Where a room sends its writes; `UpdateWriter` satisfies it."""

    is_failing: bool

    def submit(self, op: WriteOp | None) -> asyncio.Future[int | None]: ...

    def pending_for(self, document: str) -> int: ...


@dataclass(frozen=True, slots=True)
class RoomLimits:
    max_document_bytes: int = 128 * 1024 * 1024
    max_awareness_bytes: int = 64 * 1024


class Room:
    def __init__(
        self,
        name: str,
        doc: Doc,
        sink: UpdateSink,
        *,
        limits: RoomLimits = RoomLimits(),
        size_bytes: int = 0,
        deleted_state: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.doc = doc
        self.peers: dict[int, Peer] = {}
        self.is_closed = False
        self.unknown_messages = 0
        self.read_only_updates_dropped = 0
        self.updates_since_compaction = 0
        self.dirty_since: float | None = None
        self._clock = clock
        self.empty_since: float | None = clock()
        self._sink = sink
        self._limits = limits or RoomLimits()
        # Encoded size of the state, over-estimated by adding each change's size;
        # recomputed exactly only when the estimate nears the limit.
        self.size_bytes = size_bytes
        # client id -> clock that a deleted earlier incarnation reached (its tombstone)
        self.deleted_clocks = decode_state_vector(deleted_state) if deleted_state else {}
        self._last_write: asyncio.Future[int | None] | None = None
        self.awareness = Awareness(doc)
        # The server has no presence of its own (as in the reference server).
        self.awareness.set_local_state(None)
        self.awareness.observe(self._on_awareness_change)
        self._doc_subscription = doc.observe(self._on_transaction)

    def __repr__(self) -> str:
        return f"<Room {self.name!r} peers={len(self.peers)}>"

    # -- peers ---------------------------------------------------------------

    def add_peer(self, peer: Peer) -> None:
        self.peers[peer.id] = peer
        self.empty_since = None
        peer.send(encode_sync_step1(self.doc.get_state()))
        if self.awareness.states:
            peer.send(self._encode_awareness_states(list(self.awareness.states)))

    def remove_peer(self, peer: Peer) -> None:
        if self.peers.pop(peer.id, None) is None:
            return
        if not self.peers:
            self.empty_since = self._clock()
        if peer.client_ids:
            # origin None: the observer broadcasts the removal to everyone left.
            self.awareness.remove_awareness_states(sorted(peer.client_ids), None)
            peer.client_ids.clear()

    def close_peers(self, code: CloseCode, reason: str) -> None:
        for peer in list(self.peers.values()):
            peer.close(code, reason)

    def broadcast(self, message: bytes) -> None:
        for peer in list(self.peers.values()):
            peer.send(message)

    def close_idle_peers(self, now: float, idle_timeout_s: float) -> None:
        for peer in list(self.peers.values()):
            if now - peer.last_received >= idle_timeout_s:
                logger.info("doc=%s peer=%d idle: closing", self.name, peer.id)
                peer.close(CloseCode.IDLE_TIMEOUT, f"nothing received for {idle_timeout_s:g}s")

    # -- messages ------------------------------------------------------------

    def handle(self, peer: Peer, message: Message) -> asyncio.Future[int | None] | None:
        """Dispatch one decoded message; returns the write it caused, if any."""
        if self.is_closed:
            return None
        match message:
            case SyncStep1(state_vector):
                self._answer_step1(peer, state_vector)
            case SyncStep2() | SyncUpdate() if peer.is_read_only:
                self._refuse_edit(peer, message)
            case SyncStep2(update) | SyncUpdate(update):
                return self.apply_update(update)
            case AwarenessUpdate(payload):
                self._apply_awareness(peer, payload)
            case QueryAwareness():
                peer.send(self._encode_awareness_states(list(self.awareness.states)))
            case AuthMessage() | UnknownMessage():
                # Clients never send auth; unknown types are ignored and counted.
                self.unknown_messages += 1
                peer.unknown_messages += 1
                logger.debug("doc=%s peer=%d ignored %r", self.name, peer.id, message)
        return None

    def _refuse_edit(self, peer: Peer, message: SyncStep2 | SyncUpdate) -> None:
        """A read-only peer's updates are never applied, so never stored or relayed.
        A live edit closes it (4403) so the client learns its edits are refused; its
        step 2 is y-websocket's automatic reply to our step 1, not an edit: dropped
        and counted, the connection stays."""
        if isinstance(message, SyncUpdate) and message.update != _EMPTY_UPDATE:
            raise ReadOnlyEdit("read-only access: edits are refused")
        self.read_only_updates_dropped += 1
        logger.debug(
            "doc=%s peer=%d read-only: dropped a %s of %d bytes",
            self.name,
            peer.id,
            type(message).__name__,
            len(message.update),
        )

    def _answer_step1(self, peer: Peer, state_vector: bytes) -> None:
        try:
            reply = encode_sync_step2(self.doc.get_update(state_vector))
        except ValueError as exc:
            raise InvalidUpdate(f"invalid state vector: {exc}") from exc
        if not self._sink.pending_for(self.name):
            peer.send(reply)
            return
        if peer.has_deferred_reply:
            # One parked step 2 per peer: it answers this request too (it holds
            # at least as much), and a flood of step 1s cannot pile up copies.
            return
        # The reply may contain updates that are not durable yet: it waits for them.
        peer.has_deferred_reply = True
        self._sink.submit(None).add_done_callback(partial(_send_if_committed, peer, reply))

    def apply_update(self, update: bytes) -> asyncio.Future[int | None] | None:
        """Merge a Yjs update; whatever it changes is stored, then relayed."""
        if update == _EMPTY_UPDATE:
            return None
        if self.deleted_clocks:
            self._refuse_deleted_history(update)
        if self.size_bytes + len(update) > self._limits.max_document_bytes:
            self._check_size(len(update))
        self._last_write = None
        try:
            self.doc.apply_update(update)
        except (ValueError, RuntimeError) as exc:
            # yrs reports undecodable updates as ValueError and some structurally
            # impossible ones as RuntimeError; either way the Doc is unchanged.
            raise InvalidUpdate(f"invalid Yjs update: {exc}") from exc
        write, self._last_write = self._last_write, None
        if write is not None and self._sink.is_failing:
            # Merged and queued, so nothing is lost; but not durable, so not relayed.
            raise StorageUnavailable("storage is failing: the edit is not saved yet; reconnect")
        return write

    def _refuse_deleted_history(self, update: bytes) -> None:
        try:
            clocks = decode_state_vector(get_state(update))
        except ValueError as exc:
            raise InvalidUpdate(f"invalid Yjs update: {exc}") from exc
        deleted = self.deleted_clocks
        if any(client_id in deleted for client_id, clock in clocks.items() if clock):
            raise DeletedHistory(
                "this update carries history of the deleted document: discard local state"
            )

    def _check_size(self, incoming: int) -> None:
        self.size_bytes = len(self.doc.get_update())
        if self.size_bytes + incoming > self._limits.max_document_bytes:
            raise DocumentTooLarge(
                f"document of {self.size_bytes} bytes would exceed "
                f"{self._limits.max_document_bytes} bytes"
            )

    def _on_transaction(self, event: TransactionEvent) -> None:
        # Must not raise: pycrdt turns an observer's exception into an error of the
        # operation that changed the Doc.
        delta: bytes = event.update
        if delta == _EMPTY_UPDATE or self.is_closed:
            return
        self.updates_since_compaction += 1
        self.size_bytes += len(delta)
        if self.dirty_since is None:
            self.dirty_since = self._clock()
        write = self._sink.submit(AppendUpdate(self.name, delta))
        write.add_done_callback(partial(self._relay_if_committed, encode_update(delta)))
        self._last_write = write

    def _relay_if_committed(self, message: bytes, write: asyncio.Future[int | None]) -> None:
        if not write.cancelled() and write.exception() is None and not self.is_closed:
            self.broadcast(message)

    # -- awareness -----------------------------------------------------------

    def _apply_awareness(self, peer: Peer, payload: bytes) -> None:
        if len(payload) > self._limits.max_awareness_bytes:
            raise AwarenessTooLarge(
                f"awareness update of {len(payload)} bytes exceeds "
                f"{self._limits.max_awareness_bytes}"
            )
        try:
            self.awareness.apply_awareness_update(payload, peer)
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidAwareness(f"invalid awareness update: {exc}") from exc

    def _on_awareness_change(self, topic: str, change: tuple[dict[str, Any], Any]) -> None:
        if topic != "update":
            return
        changes, origin = change
        if isinstance(origin, Peer):
            announced = changes["added"] + changes["updated"]
            moved = [client_id for client_id in announced if client_id not in origin.client_ids]
            if moved:
                # A client that reconnected announces itself on its new connection
                # before its old one is gone: the old one must not remove it on leaving.
                for other in self.peers.values():
                    if other is not origin:
                        other.client_ids.difference_update(moved)
            origin.client_ids.update(announced)
            origin.client_ids.difference_update(changes["removed"])
        changed = changes["added"] + changes["updated"] + changes["removed"]
        if changed:
            self.broadcast(self._encode_awareness_states(changed))

    def _encode_awareness_states(self, client_ids: list[int]) -> bytes:
        return encode_awareness(self.awareness.encode_awareness_update(client_ids))

    def present_users(self) -> list[PresentUser]:
        """Who is in the document, from the awareness states that follow the
        y-codemirror convention `{"user": {"name", "color", ...}}`.

        One entry per distinct (name, colour) — one person in two tabs is one
        person — sorted by name. States without a string name (other clients,
        or a state that has not said who it is yet) are not people to show.
        """
        users: set[PresentUser] = set()
        for state in self.awareness.states.values():
            user = state.get("user") if isinstance(state, dict) else None
            if not isinstance(user, dict):
                continue
            name, color = user.get("name"), user.get("color")
            if isinstance(name, str) and name.strip():
                color = color[:_MAX_PRESENT_COLOR_CHARS] if isinstance(color, str) else ""
                users.add(PresentUser(name[:_MAX_PRESENT_NAME_CHARS], color))
        return sorted(users)

    # -- lifecycle -----------------------------------------------------------

    @property
    def is_dirty(self) -> bool:
        return self.updates_since_compaction > 0

    def is_compaction_due(self, now: float, after_updates: int, after_s: float) -> bool:
        if not self.is_dirty or self.dirty_since is None:
            return False
        return self.updates_since_compaction >= after_updates or now - self.dirty_since >= after_s

    def snapshot(
        self,
        kind: SnapshotKind = SnapshotKind.AUTO,
        *,
        label: str | None = None,
        author: str | None = None,
        merge_window_s: float = 0.0,
    ) -> asyncio.Future[int | None]:
        """Write the full state as a snapshot (a version); it also compacts: the
        writer drops the log entries it covers. Resolves to the snapshot's id."""
        state = self.doc.get_update()
        self.size_bytes = len(state)
        self.updates_since_compaction = 0
        self.dirty_since = None
        write = self._sink.submit(
            SaveSnapshot(
                self.name,
                state,
                preview=text_preview(state),
                kind=kind,
                label=label,
                author=author,
                merge_window_s=merge_window_s,
            )
        )
        write.add_done_callback(self._note_failed_snapshot)
        return write

    def _note_failed_snapshot(self, write: asyncio.Future[int | None]) -> None:
        if not write.cancelled() and write.exception() is not None:
            # The state stays in memory and the log keeps its entries: the next
            # compaction tries again.
            self.updates_since_compaction = max(self.updates_since_compaction, 1)
            if self.dirty_since is None:
                self.dirty_since = self._clock()

    def restore(self, target_state: bytes) -> asyncio.Future[int | None] | None:
        """Make the content equal `target_state`'s with new operations, in one
        transaction that is stored and relayed like any client's update."""
        self._last_write = None
        restore_doc(self.doc, target_state)
        write, self._last_write = self._last_write, None
        return write

    def close(self, code: CloseCode, reason: str) -> None:
        """Stop the room: no more writes or relays; its peers are asked to close."""
        self.close_peers(code, reason)
        self.is_closed = True
        self.doc.unobserve(self._doc_subscription)


def _send_if_committed(peer: Peer, message: bytes, barrier: asyncio.Future[int | None]) -> None:
    peer.has_deferred_reply = False
    if not barrier.cancelled() and barrier.exception() is None:
        peer.send(message)
