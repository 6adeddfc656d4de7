"""Who owns which client ids in one room, and the editing sessions being made.

Owns a room's attribution bookkeeping (collab.storage.attribution says what is
stored). Every local change to the Doc passes through `note_local` with the
author it is made for: the change's new content is the clock range, per client
id, as its update's structs say (collab.protocol.update_ids: a Yjs
transaction's update holds exactly what is new), and the characters its delete
set removes. A client id seen for the first time is claimed for that author; the
claim and the author's grown session ride on the next log row.

Ownership (docs/security.md#client-ids): `check` refuses, before it is
applied, an update that creates content under a client id another author
owns. Deleting anybody's content is an edit like any other and is allowed.
On an open server every connection is "anonymous", so ownership separates
token subjects only; names are shown, never trusted.

Never awaits, never raises from `note_*` (they run inside the Doc's observer).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from collab.errors import ForeignClientId
from collab.protocol.codec import decode_state_vector
from collab.protocol.update_ids import Struct, update_ids
from collab.rooms.text_roots import RootIndex, root_counts
from collab.storage.attribution import Author, ClientClaim, ClockRange, EditSession, add_range

logger = logging.getLogger(__name__)

_EMPTY_UPDATE = b"\x00\x00"
# A session ends when its author has been quiet this long; the next edit opens another.
SESSION_GAP_S = 60.0


@dataclass(slots=True)
class _OpenSession:
    key: int
    author: Author
    started_at: float
    ended_at: float
    origin: str
    source_version: int | None = None
    inserted: int = 0
    deleted: int = 0
    ranges: list[ClockRange] = field(default_factory=list)
    deleted_ranges: list[ClockRange] = field(default_factory=list)
    roots: dict[str, tuple[int, int]] = field(default_factory=dict)  # per text root
    # client id -> index in `ranges` of its latest range
    latest: dict[int, int] = field(default_factory=dict)

    def add_root_counts(self, counts: dict[str, tuple[int, int]]) -> None:
        for root, (inserted, deleted) in counts.items():
            was_inserted, was_deleted = self.roots.get(root, (0, 0))
            self.roots[root] = (was_inserted + inserted, was_deleted + deleted)

    def add(self, client_id: int, start: int, end: int) -> None:
        """Extend the client's latest range if this one continues it, else add one.
        Per client, not only the last range: several clients of one author (tabs,
        anonymous users of an open server) editing in turn would otherwise add a
        range per edit, and the session row, rewritten with every commit, would
        grow with every edit (bench/RESULTS.md, session 6)."""
        index = self.latest.get(client_id)
        if index is not None and self.ranges[index][2] == start:
            self.ranges[index] = (client_id, self.ranges[index][1], end)
        else:
            self.latest[client_id] = len(self.ranges)
            self.ranges.append((client_id, start, end))
        self.inserted += end - start

    def add_deleted(self, client_id: int, start: int, end: int) -> None:
        add_range(self.deleted_ranges, client_id, start, end)
        self.deleted += end - start

    def frozen(self) -> EditSession:
        return EditSession(
            key=self.key,
            author=self.author,
            started_at=self.started_at,
            ended_at=self.ended_at,
            inserted=self.inserted,
            deleted=self.deleted,
            ranges=tuple(self.ranges),
            origin=self.origin,
            source_version=self.source_version,
            deleted_ranges=tuple(self.deleted_ranges),
            roots=root_counts(self.roots),
        )


class Authorship:
    """A room's client-id owners, known clocks and open sessions."""

    def __init__(
        self,
        document: str,
        state_vector: bytes,
        owners: Mapping[int, str] = {},
        *,
        wall_clock: Callable[[], float] = time.time,
        gap_s: float = SESSION_GAP_S,
        full_state: Callable[[], bytes] = lambda: _EMPTY_UPDATE,
    ) -> None:
        self._document = document
        self.owners: dict[int, str] = dict(owners)
        self._subjects = set(self.owners.values())  # who owns any client id here
        self._clocks = decode_state_vector(state_vector)
        self._wall_clock = wall_clock
        self._gap_s = gap_s
        self._sessions: dict[tuple[str, str | None, str, int | None], _OpenSession] = {}
        self._pending_claims: list[ClientClaim] = []
        self._pending_sessions: dict[int, _OpenSession] = {}
        # Which text root each item hangs in; changes wait for it to the end of
        # the tick (collab.rooms.text_roots: it may read the Doc, which pycrdt
        # forbids inside the observer `note_*` runs in).
        self._roots = RootIndex(full_state)
        self._unindexed: list[tuple[_OpenSession, list[Struct], tuple[ClockRange, ...]]] = []

    def check(self, update: bytes, author: Author, peer_id: int) -> None:
        """Refuse `update` if it creates content under another author's client id.
        Content the room has already (a resent or shared update) is not new and
        does not count. Raises ValueError if the update does not decode."""
        if self._subjects <= {author.subject}:
            return  # nobody else owns a client id here: nothing to parse
        for client_id, (_, end) in update_ids(update).created.items():
            owner = self.owners.get(client_id)
            if owner is None or owner == author.subject or end <= self._clocks.get(client_id, 0):
                continue
            logger.warning(
                "doc=%s peer=%d refused: writes under client id %d, owned by another author",
                self._document,
                peer_id,
                client_id,
            )
            raise ForeignClientId(f"client id {client_id} belongs to another author")

    def note_local(
        self, delta: bytes, author: Author, origin: str = "edit", source: int | None = None
    ) -> None:
        """A change made in this room for `author`: claims and its session grow."""
        now = self._wall_clock()
        session = self._session_for(author, origin, source, now)
        session.ended_at = now
        created, deleted = self._advance(delta, session)
        for client_id, start, end in deleted:
            session.add_deleted(client_id, start, end)
        for client_id, start, end in created:
            if client_id not in self.owners:
                self.owners[client_id] = author.subject
                self._subjects.add(author.subject)
                self._pending_claims.append(ClientClaim(client_id, author.subject))
            session.add(client_id, start, end)
        self._pending_sessions[session.key] = session

    def note_remote(self, delta: bytes, owners: Mapping[int, str]) -> None:
        """A change another process made (and attributed): only what it knows."""
        self._advance(delta, None)
        for client_id, subject in owners.items():
            self.owners.setdefault(client_id, subject)
            self._subjects.add(subject)

    def take_pending(self) -> tuple[tuple[ClientClaim, ...], tuple[EditSession, ...]]:
        """The claims and sessions not yet on their way to storage."""
        claims, self._pending_claims = tuple(self._pending_claims), []
        unindexed, self._unindexed = self._unindexed, []
        for session, structs, deleted in unindexed:
            try:
                session.add_root_counts(self._roots.counts(structs, deleted))
            except ValueError:  # the Doc's state did not decode: count nothing
                logger.exception("doc=%s the text roots could not be read", self._document)
        sessions = tuple(s.frozen() for s in self._pending_sessions.values())
        self._pending_sessions = {}
        return claims, sessions

    def _advance(
        self, delta: bytes, session: _OpenSession | None
    ) -> tuple[list[ClockRange], tuple[ClockRange, ...]]:
        """The ranges `delta` creates, and those it deletes (queued for the
        per-root counts of `session`)."""
        structs: list[Struct] = []
        try:
            ids = update_ids(delta, structs)
        except ValueError:  # yrs made it; should it not decode, attribute nothing
            logger.exception("doc=%s a change does not decode", self._document)
            return [], ()
        created = []
        for client_id, (start, end) in ids.created.items():
            created.append((client_id, start, end))
            self._clocks[client_id] = max(end, self._clocks.get(client_id, 0))
        if session is None:  # another process's: indexed now, counted there
            self._roots.add(structs, may_build=False)
        else:
            self._unindexed.append((session, structs, ids.deleted_ranges))
        return created, ids.deleted_ranges

    def _session_for(
        self, author: Author, origin: str, source: int | None, now: float
    ) -> _OpenSession:
        key = (author.subject, author.name, origin, source)
        session = self._sessions.get(key)
        if session is None or now - session.ended_at > self._gap_s or session.author != author:
            session = _OpenSession(random.getrandbits(52), author, now, now, origin, source)
            self._sessions[key] = session
        return session
