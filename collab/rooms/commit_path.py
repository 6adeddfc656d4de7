"""A room's commit path: its changes stored as log rows, relayed once durable.

Owns the `CommitPath` part of `Room`, `UpdateSink` (the writer seam) and
`RoomClosed`. Apart from the relay algorithm in collab.rooms.room so that it
reads as y-websocket's; a part of the class rather than an object of its own
because `submit_edits` runs every tick and `_relay_if_committed` every commit,
and a mixin adds no call or attribute hop there.

Invariants:
- The changes of one event-loop tick are stored as ONE log row and relayed as
  ONE message (merged): a client that sends a burst - a paste, a replay, a
  reconnect flushing its offline edits - costs one commit and one send per peer
  per tick, not per frame. Whoever needs them stored sooner (a step 2, a
  snapshot, closing, a restore) calls `submit_edits` first; `has_pending_edits`
  covers both the unsubmitted and the uncommitted.
- Nothing leaves the room before it is durable: relays wait for the writer's
  future; a deferred step 2 waits for a barrier (`send_if_committed`). A write
  the database refuses for good (or declines: the document was deleted) is
  never relayed, and the room hands itself to `on_write_refused` (the registry
  closes it and its peers, and loads it from storage for the next joiner), so
  what its Doc holds beyond storage is never served.
- A closed room writes nothing more: `submit_edits` submits nothing, and
  `capture` (a snapshot) raises `RoomClosed`.
- Compaction is exact: the room's ledger (collab.rooms.ledger) knows the log
  rows its Doc holds and the snapshot sequence it contains; a snapshot deletes
  exactly those rows. Only this process's own edits make a compaction due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol

from pycrdt import Doc, merge_updates

from collab.content import live_text_preview
from collab.errors import CollabError
from collab.protocol.codec import encode_update
from collab.rooms.authorship import Authorship
from collab.rooms.cluster_feed import ClusterFeed
from collab.rooms.ledger import CompactionLedger, SnapshotCapture
from collab.rooms.peer import Peer
from collab.rooms.yrs_panics import yrs_panics_as
from collab.storage.store import AppendUpdate, OpDeclined, WriteOp

logger = logging.getLogger(__name__)

_MAX_MERGED = 64  # updates merged into one log row at most


class RoomClosed(CollabError):
    """The room is closed (its document deleted or unloaded, a write of it
    refused, the server stopping): it takes no more writes."""


class UpdateSink(Protocol):
    """Where a room sends its writes; `UpdateWriter` satisfies it."""

    is_failing: bool

    def submit(self, op: WriteOp | None) -> asyncio.Future[int | None]: ...

    def pending_for(self, document: str) -> int: ...


class CommitPath:
    """Submitting, relaying once committed, refusals and captures of a `Room`
    (its state is set by `Room`)."""

    name: str
    doc: Doc[Any]
    is_closed: bool
    incarnation: int | None
    ledger: CompactionLedger
    authorship: Authorship
    size_bytes: int
    _exact_size: int | None
    _sink: UpdateSink
    _feed: ClusterFeed
    _unsubmitted: list[bytes]  # this tick's local changes, stored and relayed together
    _on_write_refused: Callable[[Any, Exception], None] | None
    broadcast: Callable[[bytes], None]

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
            preview = live_text_preview(self.doc)
        self.size_bytes = self._exact_size = len(state)
        return self.ledger.capture(state, preview)


def send_if_committed(peer: Peer, message: bytes, barrier: asyncio.Future[int | None]) -> None:
    """Send a deferred step 2 once the writes it may hold are durable (its barrier)."""
    peer.has_deferred_reply = False
    if not barrier.cancelled() and barrier.exception() is None:
        peer.send(message)
