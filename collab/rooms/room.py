"""One document: its Doc, its peers, fan-out (awareness: collab.rooms.presence).

This is y-websocket's reference algorithm, kept readable:
join -> send sync step 1 and the current awareness states; answer step 1 with
step 2; every change to the Doc -> made durable -> relayed to every peer, the
sender included (y-websocket marks an edit saved on that echo); track the
awareness client ids each peer announced and broadcast their removal when it
leaves, so no ghost cursors remain.

With several server processes (a cluster), a room also hears from the others
through its `ClusterFeed`: what a local peer changes is stored, then relayed to
the local peers AND published to the feed; what another process made durable
arrives through `apply_remote` and is relayed to the local peers at once, never
stored again. Awareness goes both ways too, tagged with the process it came
from, so the presence of a dead process's clients can be removed.

`Room` is one object; its secondary parts live in their own modules, as parts
of the class (mixins: the per-update path gains no call or attribute hop):
- collab.rooms.commit_path: storing a tick's changes as one log row, relaying
  them once committed, refused writes, captures for snapshots;
- collab.rooms.room_limits: the document-size and deleted-history checks;
- collab.rooms.edit_authors: whom a change is attributed to, server edits.

Invariants:
- The hot path never awaits: decode -> apply -> (end of the tick) submit to the
  writer -> on commit, encode once -> append to each peer's outbox (and the
  feed). The room never awaits a peer (a `Peer.send` never blocks), the
  database nor the feed.
- Nothing leaves the room before it is durable (see collab.rooms.commit_path);
  a remote update is durable already: another process committed it before
  publishing.
- Every change to the Doc goes through `_on_transaction`, whether a client sent
  it, the server made it, or another process did, so there is one path to
  storage and one relay path to the peers.
- Limits are checked before an update is applied (collab.rooms.room_limits).
  While storage fails, an edit is still merged and queued (never lost, never
  relayed before it is durable) but its sender is told, with 4503.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from typing import Any

from pycrdt import Doc, TransactionEvent

from collab.errors import CloseCode, InvalidUpdate, ReadOnlyEdit, StorageUnavailable
from collab.metrics import Metrics
from collab.protocol.codec import (
    AuthMessage,
    AwarenessUpdate,
    Message,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    UnknownMessage,
    decode_state_vector,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
)
from collab.rooms.authorship import Authorship
from collab.rooms.cluster_feed import ClusterFeed, NoCluster
from collab.rooms.commit_path import CommitPath, UpdateSink, send_if_committed
from collab.rooms.edit_authors import EditAuthors
from collab.rooms.end_of_tick import EndOfTick
from collab.rooms.ledger import CompactionLedger
from collab.rooms.peer import Peer
from collab.rooms.presence import Presence
from collab.rooms.room_limits import DocumentLimits, RoomLimits
from collab.rooms.sync_reply import SyncReplyCache
from collab.rooms.yrs_panics import yrs_panics_as
from collab.storage.attribution import SERVER_AUTHOR, Author

logger = logging.getLogger(__name__)

_EMPTY_UPDATE = b"\x00\x00"


class Room(EditAuthors, DocumentLimits, CommitPath):
    """One live document: its Doc, its peers, presence, and the relay between them.

    Synchronous on purpose: `handle` decodes nothing and awaits nothing; what
    must be stored goes to the sink at the end of the tick and is relayed when
    the sink's future says it is committed. The registry creates, joins, leaves
    and closes rooms; the edge calls `handle` for each decoded message.
    """

    def __init__(
        self,
        name: str,
        doc: Doc[Any],
        sink: UpdateSink,
        *,
        limits: RoomLimits | None = None,
        size_bytes: int = 0,
        tombstone: bytes | None = None,
        clock: Callable[[], float] = time.monotonic,
        feed: ClusterFeed | None = None,
        row_ids: Iterable[int] = (),
        snapshot_seq: int = 0,
        incarnation: int | None = None,
        on_write_refused: Callable[[Room, Exception], None] | None = None,
        metrics: Metrics | None = None,
        owners: Mapping[int, str] = {},
    ) -> None:
        self.name = name
        self.doc = doc
        self.peers: dict[int, Peer] = {}
        self.is_closed = False
        self.close_code: CloseCode | None = None
        # The document's incarnation its writes are made for (see
        # collab.storage.store); None: unchecked (tests on fakes).
        self.incarnation = incarnation
        self._on_write_refused = on_write_refused
        self._metrics = metrics or Metrics()
        self._clock = clock
        self.empty_since: float | None = clock()
        self._sink = sink
        self._limits = limits or RoomLimits()
        # the size estimate and the tombstone (collab.rooms.room_limits)
        self.size_bytes = size_bytes
        self._exact_size: int | None = None
        self.tombstone_clocks = decode_state_vector(tombstone) if tombstone else {}
        # This tick's local changes, stored and relayed together at its end.
        self._unsubmitted: list[bytes] = []
        self._end_of_tick = EndOfTick(self.submit_edits)
        self._local_changes = 0  # counts `_on_transaction`'s local changes
        self._feed = feed or NoCluster()
        self._is_applying_remote = False
        self.ledger = CompactionLedger(clock, row_ids, snapshot_seq)
        self.presence = Presence(
            name,
            self.peers,
            self.broadcast,
            self._feed,
            max_bytes=self._limits.max_awareness_bytes,
            limits=self._limits.presence,
            clock=clock,
            metrics=self._metrics,
        )
        self.awareness = self.presence.awareness
        # joiners of a big document share one step 2
        self.sync_replies = SyncReplyCache(self._metrics.sync_replies_shared)
        # Who owns which client id, and the sessions being made (attribution).
        self.authorship = Authorship(name, doc.get_state(), owners, full_state=doc.get_update)
        self._acting: Author | None = None  # whom the change being made is for
        self._acting_origin = "edit"
        self._acting_source: int | None = None  # a restore's version
        self._remote_owners: Mapping[int, str] = {}
        self._doc_subscription = doc.observe(self._on_transaction)

    def __repr__(self) -> str:
        return f"<Room {self.name!r} peers={len(self.peers)}>"

    # -- peers ---------------------------------------------------------------

    def add_peer(self, peer: Peer) -> None:
        self.peers[peer.id] = peer
        self.empty_since = None
        peer.send(encode_sync_step1(self.doc.get_state()))
        if self.awareness.states:
            peer.send(self.presence.encode_all())

    def remove_peer(self, peer: Peer) -> None:
        if self.peers.pop(peer.id, None) is None:
            return
        if not self.peers:
            self.empty_since = self._clock()
        self.presence.remove_peer(peer)

    def close_peers(self, code: CloseCode, reason: str) -> None:
        for peer in list(self.peers.values()):
            peer.close(code, reason)

    def broadcast(self, message: bytes) -> None:
        written = 0
        for peer in list(self.peers.values()):
            written += peer.send_copy(message)
        if written:
            self._metrics.sent.count(message, written)

    def close_idle_peers(self, now: float, idle_timeout_s: float) -> None:
        for peer in list(self.peers.values()):
            if now - peer.last_received >= idle_timeout_s:
                logger.info("doc=%s peer=%d idle: closing", self.name, peer.id)
                peer.close(CloseCode.IDLE_TIMEOUT, f"nothing received for {idle_timeout_s:g}s")

    # -- messages ------------------------------------------------------------

    def handle(self, peer: Peer, message: Message) -> bool:
        """Dispatch one decoded message; True if it changed the document."""
        if self.is_closed:
            return False
        if type(message) is SyncUpdate and not peer.is_read_only:  # an edit: most messages
            return self.apply_update(message.update, self._author_of(peer), peer.id)
        match message:
            case SyncStep1(state_vector):
                self._answer_step1(peer, state_vector)
            case SyncStep2() | SyncUpdate() if peer.is_read_only:
                self._refuse_edit(peer, message)
            case SyncStep2(update) | SyncUpdate(update):
                return self.apply_update(update, self._author_of(peer), peer.id)
            case AwarenessUpdate():
                self.presence.apply_from_peer(peer, message)
            case QueryAwareness():
                self.presence.answer_query(peer)
            case AuthMessage() | UnknownMessage():
                # Clients never send auth; unknown types are ignored and counted.
                self._metrics.messages_ignored.labels("unknown_type").inc()
                logger.debug("doc=%s peer=%d ignored %r", self.name, peer.id, message)
        return False

    def _refuse_edit(self, peer: Peer, message: SyncStep2 | SyncUpdate) -> None:
        """A read-only peer's updates are never applied, so never stored or relayed.
        A live edit closes it (4403) so the client learns its edits are refused; its
        step 2 is y-websocket's automatic reply to our step 1, not an edit: dropped
        and counted, the connection stays."""
        if isinstance(message, SyncUpdate) and message.update != _EMPTY_UPDATE:
            raise ReadOnlyEdit("read-only access: edits are refused")
        self._metrics.messages_ignored.labels("read_only_step2").inc()
        logger.debug(
            "doc=%s peer=%d read-only: dropped a %s of %d bytes",
            self.name,
            peer.id,
            type(message).__name__,
            len(message.update),
        )

    def _answer_step1(self, peer: Peer, state_vector: bytes) -> None:
        self.submit_edits()  # the reply may hold them: they must be on their way to disk
        try:
            with yrs_panics_as(InvalidUpdate):
                reply = self.sync_replies.reply(state_vector, self._encode_step2)
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
        self._sink.submit(None).add_done_callback(partial(send_if_committed, peer, reply))

    def _encode_step2(self, state_vector: bytes) -> bytes:
        return encode_sync_step2(self.doc.get_update(state_vector))

    def handle_updates(self, peer: Peer, updates: Sequence[bytes]) -> bool:
        """`handle` for a run of sync updates `peer` sent back to back (a fast
        writer's one read holds thousands): applied together, see `apply_updates`."""
        if self.is_closed:
            return False
        if peer.is_read_only:
            for update in updates:
                self._refuse_edit(peer, SyncUpdate(update))
            return False
        return self.apply_updates(updates, self._author_of(peer), peer.id)

    def apply_update(self, update: bytes, author: Author | None = None, peer_id: int = 0) -> bool:
        """Merge a Yjs update made by `author` (None: the server, see `edits_by`);
        whatever it changes is stored with its attribution, then relayed.
        True if it changed the document."""
        return self.apply_updates((update,), author, peer_id)

    def apply_updates(
        self, updates: Sequence[bytes], author: Author | None = None, peer_id: int = 0
    ) -> bool:
        """`apply_update` for several updates, in order, in ONE Doc transaction:
        the observer runs once, so the run is one delta to attribute, store and
        relay, instead of one per update (the per-update machinery, not yrs, was
        most of a fast writer's CPU: bench/RESULTS.md, session 11). Each update
        is checked as if alone; a refused one raises after those before it are
        applied, exactly as one by one."""
        author = author or self._acting or SERVER_AUTHOR
        changes_before = self._local_changes
        # `edits_by(author)`, spelled out: this runs for every edit, and a
        # generator context manager costs more than the rest of this method
        # (bench/RESULTS.md, session 6).
        previous, self._acting = self._acting, author
        try:
            if len(updates) == 1:
                self._apply_checked(updates[0], author, peer_id, 0)
            else:
                with self.doc.transaction():
                    incoming = 0  # not in `size_bytes` until the observer runs
                    for update in updates:
                        self._apply_checked(update, author, peer_id, incoming)
                        incoming += len(update)
        finally:
            self._acting = previous
        is_changed = self._local_changes != changes_before
        if is_changed and self._sink.is_failing:
            # Merged and queued, so nothing is lost; but not durable, so not relayed.
            raise StorageUnavailable("storage is failing: the edit is not saved yet; reconnect")
        return is_changed

    def _apply_checked(self, update: bytes, author: Author, peer_id: int, incoming: int) -> None:
        """Check one update against the room's limits and owners, then apply it;
        `incoming`: bytes of the same run applied before it."""
        if update == _EMPTY_UPDATE:
            return
        if self.tombstone_clocks:
            self._refuse_deleted_history(update)
        self.ensure_room_for(incoming + len(update))
        # `yrs_panics_as(InvalidUpdate)`, spelled out (see `apply_updates`).
        try:
            self.authorship.check(update, author, peer_id)
            self.doc.apply_update(update)
        except (ValueError, RuntimeError) as exc:
            # yrs reports undecodable updates as ValueError and some structurally
            # impossible ones as RuntimeError; either way the Doc is unchanged.
            raise InvalidUpdate(f"invalid Yjs update: {exc}") from exc
        except BaseException as exc:
            if type(exc).__name__ != "PanicException":
                raise
            raise InvalidUpdate(f"yrs panicked: {exc}") from exc

    def apply_remote(self, update: bytes, owners: Mapping[int, str] = {}) -> None:
        """Merge an update another process made durable: it is relayed to this
        room's peers at once and never stored again. Raises ValueError or
        RuntimeError if it does not decode (the Doc is unchanged). `owners`: the
        client ids it claimed (their authors), so this room enforces them too.

        Its log row is left to the process that wrote it (or to whoever loads
        it from storage next) to compact: one that arrived before its causal
        past stays pending inside yrs, outside `get_update()`, so this room
        cannot tell that a snapshot of its own would hold it."""
        if self.is_closed:
            return
        self._is_applying_remote = True
        self._remote_owners = owners
        try:
            self.doc.apply_update(update)
        finally:
            self._is_applying_remote = False
            self._remote_owners = {}

    def _on_transaction(self, event: TransactionEvent) -> None:
        # Must not raise: pycrdt turns an observer's exception into an error of the
        # operation that changed the Doc.
        self.sync_replies.invalidate()
        delta: bytes = event.update
        if delta == _EMPTY_UPDATE or self.is_closed:
            return
        self.size_bytes += len(delta)
        if self._is_applying_remote:
            self.authorship.note_remote(delta, self._remote_owners)
            self.broadcast(encode_update(delta))  # durable already (another process)
            return
        self.authorship.note_local(
            delta, self._acting or SERVER_AUTHOR, self._acting_origin, self._acting_source
        )
        self._local_changes += 1
        self._unsubmitted.append(delta)
        self._end_of_tick.schedule()

    # -- lifecycle -----------------------------------------------------------

    def close(self, code: CloseCode, reason: str) -> None:
        """Stop the room: no more writes or relays; its peers are asked to close."""
        if self.is_closed:
            return
        self.submit_edits()  # stored still, even if nobody is left to relay them to
        self.close_peers(code, reason)
        self.is_closed = True
        self.close_code = code
        self.doc.unobserve(self._doc_subscription)
        self.sync_replies.invalidate()
