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

Invariants:
- The hot path never awaits: decode -> apply -> (end of the tick) submit to the
  writer -> on commit, encode once -> append to each peer's outbox (and the
  feed). The room never awaits a peer (a `Peer.send` never blocks), the
  database nor the feed.
- The changes of one event-loop tick are stored as ONE log row and relayed as
  ONE message (merged): a client that sends a burst - a paste, a replay, a
  reconnect flushing its offline edits - costs one commit and one send per peer
  per tick, not per frame. Whoever needs them stored sooner (a step 2, a
  snapshot, closing, a restore) calls `submit_edits` first; `has_pending_edits`
  covers both the unsubmitted and the uncommitted.
- Nothing leaves the room before it is durable: relays wait for the writer's
  future; a step 2 waits for the document's pending writes (a barrier). A remote
  update is durable already: another process committed it before publishing.
  A write the database refuses for good (or declines: the document was deleted)
  is never relayed, and the room hands itself to `on_write_refused` (the
  registry closes it and its peers, and loads it from storage for the next
  joiner), so what its Doc holds beyond storage is never served.
- A closed room writes nothing more: `submit_edits` submits nothing, and
  `capture` (a snapshot) raises `RoomClosed`.
- Every change to the Doc goes through `_on_transaction`, whether a client sent
  it, the server made it, or another process did, so there is one path to
  storage and one relay path to the peers.
- Compaction is exact: the room's ledger (collab.rooms.ledger) knows the log rows its
  Doc holds and the snapshot sequence it contains; a snapshot deletes exactly
  those rows. Only this process's own edits make a compaction due.
- Limits are checked before an update is applied: the document's size (an
  estimate, made exact by one encode only near the limit) and the history of a
  deleted incarnation (its tombstone) that an old client might try to bring back.
  While storage fails, an edit is still merged and queued (never lost, never
  relayed before it is durable) but its sender is told, with 4503.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from pycrdt import Doc, TransactionEvent, get_state, merge_updates

from collab.errors import (
    CloseCode,
    CollabError,
    DeletedHistory,
    DocumentTooLarge,
    InvalidUpdate,
    ReadOnlyEdit,
    StorageUnavailable,
)
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
from collab.rooms.end_of_tick import EndOfTick
from collab.rooms.ledger import CompactionLedger, SnapshotCapture
from collab.rooms.peer import Peer
from collab.rooms.presence import Presence, PresenceLimits, present_user
from collab.rooms.sync_reply import SyncReplyCache
from collab.storage.attribution import SERVER, Author
from collab.storage.store import AppendUpdate, OpDeclined, WriteOp

logger = logging.getLogger(__name__)

_EMPTY_UPDATE = b"\x00\x00"
_MAX_MERGED = 64  # updates merged into one log row at most
_SERVER_AUTHOR = Author(SERVER, is_verified=True)


@contextlib.contextmanager
def yrs_panics_as(error: Callable[[str], Exception]) -> Iterator[None]:
    """Turn a Rust panic inside yrs into `error`.

    pycrdt surfaces a panic as pyo3's PanicException, a BaseException, so every
    `except Exception` task boundary would miss it (a janitor sweep that met one
    would end the janitor). Fuzzing found frames that leave a Doc whose encoding
    panics (yrs 0.28, divide by zero in block_store); this keeps that to one
    refused connection or one failed compaction, reported, not a dead task."""
    try:
        yield
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":
            raise
        raise error(f"yrs panicked: {exc}") from exc


class RoomClosed(CollabError):
    """The room is closed (its document deleted or unloaded, a write of it
    refused, the server stopping): it takes no more writes."""


class UpdateSink(Protocol):
    """Where a room sends its writes; `UpdateWriter` satisfies it."""

    is_failing: bool

    def submit(self, op: WriteOp | None) -> asyncio.Future[int | None]: ...

    def pending_for(self, document: str) -> int: ...


@dataclass(frozen=True, slots=True)
class RoomLimits:
    max_document_bytes: int = 128 * 1024 * 1024
    max_awareness_bytes: int = 64 * 1024
    presence: PresenceLimits = field(default_factory=PresenceLimits)

    @property
    def size_margin_bytes(self) -> int:
        """How far past `max_document_bytes` a document may get: 1/64 of it, so
        that near the limit the Doc is encoded at most once per that much growth."""
        return max(1, self.max_document_bytes // 64)


class Room:
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
        limits: RoomLimits = RoomLimits(),
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
        # Encoded size of the state, over-estimated by adding each change's size;
        # recomputed exactly only when the estimate nears the limit (`_check_size`).
        self.size_bytes = size_bytes
        self._exact_size: int | None = None  # `size_bytes` when it was last exact
        # client id -> clock that a deleted earlier incarnation reached (its tombstone)
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
        for peer in list(self.peers.values()):
            peer.send(message)

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

    def _author_of(self, peer: Peer) -> Author:
        """The peer's author, named as its awareness state announces them."""
        author = peer.author
        if author.is_verified and author.name:
            return author
        for client_id in peer.client_ids:
            state = self.awareness.states.get(client_id)
            user = present_user(state) if state is not None else None
            if user is not None:
                return Author(author.subject, user.name, author.is_verified)
        return author

    @contextlib.contextmanager
    def edits_by(
        self, author: Author, origin: str = "edit", source_version: int | None = None
    ) -> Iterator[None]:
        """Changes made to the Doc inside are attributed to `author`: the one way
        server-side edits (restores, reverts, programs) carry who asked for them."""
        previous = self._acting, self._acting_origin, self._acting_source
        self._acting, self._acting_origin, self._acting_source = author, origin, source_version
        try:
            yield
        finally:
            self._acting, self._acting_origin, self._acting_source = previous

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
        self._sink.submit(None).add_done_callback(partial(_send_if_committed, peer, reply))

    def _encode_step2(self, state_vector: bytes) -> bytes:
        return encode_sync_step2(self.doc.get_update(state_vector))

    def apply_update(self, update: bytes, author: Author | None = None, peer_id: int = 0) -> bool:
        """Merge a Yjs update made by `author` (None: the server, see `edits_by`);
        whatever it changes is stored with its attribution, then relayed.
        True if it changed the document."""
        if update == _EMPTY_UPDATE:
            return False
        if self.tombstone_clocks:
            self._refuse_deleted_history(update)
        self.ensure_room_for(len(update))
        author = author or self._acting or _SERVER_AUTHOR
        changes_before = self._local_changes
        # `edits_by(author)` and `yrs_panics_as(InvalidUpdate)`, spelled out: this
        # runs for every edit, and two generator context managers cost more than
        # the rest of this method (bench/RESULTS.md, session 6).
        previous, self._acting = self._acting, author
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
        finally:
            self._acting = previous
        is_changed = self._local_changes != changes_before
        if is_changed and self._sink.is_failing:
            # Merged and queued, so nothing is lost; but not durable, so not relayed.
            raise StorageUnavailable("storage is failing: the edit is not saved yet; reconnect")
        return is_changed

    def _refuse_deleted_history(self, update: bytes) -> None:
        try:
            clocks = decode_state_vector(get_state(update))
        except ValueError as exc:
            raise InvalidUpdate(f"invalid Yjs update: {exc}") from exc
        deleted = self.tombstone_clocks
        if any(client_id in deleted for client_id, clock in clocks.items() if clock):
            raise DeletedHistory(
                "this update carries history of the deleted document: discard local state"
            )

    def ensure_room_for(self, incoming: int) -> None:
        """`DocumentTooLarge` if `incoming` more bytes may take the document past
        its limit (cheap unless the document is near it)."""
        if self.size_bytes + incoming > self._limits.max_document_bytes:
            self._check_size(incoming)

    def _check_size(self, incoming: int) -> None:
        """The estimate says `incoming` bytes may not fit. An exact size is a full
        encode of the Doc, so it is not taken for every update near the limit:
        only once the estimate has grown by `size_margin_bytes` since the last
        one, or before a refusal (a refusal is always exact). Between two, an
        update is judged by the last exact size, so the document ends below the
        limit plus the margin."""
        limit, exact = self._limits.max_document_bytes, self._exact_size
        grown = 0 if exact is None else self.size_bytes - exact
        if (
            exact is None
            or grown >= self._limits.size_margin_bytes
            or (grown > 0 and exact + incoming > limit)
        ):
            with yrs_panics_as(RuntimeError):
                exact = len(self.doc.get_update())
            self.size_bytes = self._exact_size = exact
        if exact + incoming > limit:
            raise DocumentTooLarge(f"document of {exact} bytes would exceed {limit} bytes")

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
            delta, self._acting or _SERVER_AUTHOR, self._acting_origin, self._acting_source
        )
        self._local_changes += 1
        self._unsubmitted.append(delta)
        self._end_of_tick.schedule()

    def apply_server_edit(
        self, edit: Callable[[Doc[Any]], None], *, author: Author | None
    ) -> asyncio.Future[int | None] | None:
        """A change the server makes to the Doc on someone's behalf (the HTTP
        editing API): `edit` changes the Doc synchronously, and the change is
        submitted at once as its own log row, stored and relayed like a client's
        edit, attributed to `author` (who it is made for; None: the server).

        Earlier edits are submitted first, so the row holds only this change.
        Returns the write (its result is the row id) or None if nothing changed.
        Raises `RoomClosed`, `StorageUnavailable` (storage failing: nothing is
        applied), or whatever `edit` raises (it must leave the Doc unchanged
        when it raises)."""
        if self.is_closed:
            raise RoomClosed(f"doc={self.name}: the room is closed")
        if self._sink.is_failing:
            raise StorageUnavailable("storage is failing: the edit is not applied; retry")
        self.submit_edits()
        with self.edits_by(author or _SERVER_AUTHOR):
            edit(self.doc)
        write = self.submit_edits()
        if write is not None:
            logger.info("doc=%s server edit by %s", self.name, (author or _SERVER_AUTHOR).label)
        return write

    @property
    def has_pending_edits(self) -> bool:
        """Changes in the Doc that are not durable yet (unsubmitted or uncommitted)."""
        return bool(self._unsubmitted) or self._sink.pending_for(self.name) > 0

    def submit_edits(self) -> asyncio.Future[int | None] | None:
        """Send the changes not yet submitted to the writer, as one log row that
        is relayed once committed; returns that write (None if there was none)."""
        deltas, self._unsubmitted = self._unsubmitted, []
        if not deltas or self.is_closed:
            return None
        # The tick's attribution rides on its first row (one transaction or the
        # next: the writer commits in submission order).
        claims, sessions = self.authorship.take_pending()
        # Who the `document.updated` event names: the tick's last author.
        subject = sessions[-1].author.subject if sessions else None
        for delta in self._merged(deltas):
            op = AppendUpdate(self.name, delta, self.incarnation, claims, sessions, author=subject)
            write = self._sink.submit(op)
            self.ledger.note_edit(write)
            owners = {claim.client_id: claim.subject for claim in claims}
            write.add_done_callback(partial(self._relay_if_committed, delta, owners))
            claims, sessions = (), ()
        return write

    def _relay_if_committed(
        self, delta: bytes, owners: Mapping[int, str], write: asyncio.Future[int | None]
    ) -> None:
        row_id = self.ledger.note_committed(write)
        if row_id is None:
            if not write.cancelled() and isinstance(refusal := write.exception(), Exception):
                self.write_refused(refusal)
            return
        if self.is_closed:
            return
        self.broadcast(encode_update(delta))
        self._feed.publish_update(self.name, delta, row_id, owners)

    def _merged(self, deltas: list[bytes]) -> list[bytes]:
        """A few updates, each merging a bounded run of `deltas` (merging grows
        faster than linearly with the number of updates)."""
        if len(deltas) == 1:
            return deltas
        runs = [deltas[i : i + _MAX_MERGED] for i in range(0, len(deltas), _MAX_MERGED)]
        try:
            with yrs_panics_as(RuntimeError):
                return [run[0] if len(run) == 1 else merge_updates(*run) for run in runs]
        except (ValueError, RuntimeError):  # yrs made them; still, store them as they are
            logger.exception("doc=%s could not merge %d updates", self.name, len(deltas))
            return deltas

    # -- lifecycle -----------------------------------------------------------

    def write_refused(self, refusal: Exception) -> None:
        """A write of this room was refused for good, or declined because its
        document is gone: the Doc holds what storage does not."""
        if self.is_closed:
            logger.info("doc=%s a write of the closed room was refused: %s", self.name, refusal)
            return
        # A deletion that won a race is expected; a database refusing an edit is not.
        level = logging.WARNING if isinstance(refusal, OpDeclined) else logging.ERROR
        logger.log(level, "doc=%s a write was refused: %s", self.name, refusal)
        if self._on_write_refused is not None:
            self._on_write_refused(self, refusal)

    def capture(self) -> SnapshotCapture:
        """The state now and the log rows it holds, for a snapshot (see the ledger;
        collab.rooms.compaction writes it)."""
        if self.is_closed:
            raise RoomClosed(f"doc={self.name}: the room is closed")
        self.submit_edits()
        with yrs_panics_as(RuntimeError):
            state = self.doc.get_update()
        self.size_bytes = self._exact_size = len(state)
        return self.ledger.capture(state)

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


def _send_if_committed(peer: Peer, message: bytes, barrier: asyncio.Future[int | None]) -> None:
    peer.has_deferred_reply = False
    if not barrier.cancelled() and barrier.exception() is None:
        peer.send(message)
