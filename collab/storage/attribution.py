"""Who wrote what, as stored: client-id claims and editing sessions.

Attribution is tied to the CRDT's own identities. Every item Yjs creates is
named (client id, clock); a client id belongs to one author, recorded the first
time content appears under it (`ClientClaim`). What an author did and when is
kept as editing sessions (`EditSession`): the clock ranges created, characters
inserted and deleted, and the time span, per author. Both ride on the
`AppendUpdate` that stores the edits, so they are written in the SAME
transaction as the log row (the writer's group commit): a row is never stored
without its attribution, and since neither table is touched by compaction or
retention, attribution outlives both.

A session grows with every commit of its author's edits, but its row is not
rewritten per commit: each log row carries what its tick added to each session
(a delta, `encode_deltas`), in the row's own page, and the session rows are
folded from those deltas (`fold`) when the log rows go (compaction,
quarantine). A read folds the deltas still in the log onto the rows, so it is
exact, and `kill -9` loses nothing a commit had. `through_id` on a session row
says which log rows it holds already (every delta of it with an id up to it):
a fold applies only the newer ones, so folding twice, or a read racing a
compaction, never counts a delta twice.

Why not pycrdt's `IdMap`/`ContentAttribute`: they hold ranges with attributes
well, but pycrdt 0.14 offers no way to ask a Doc which item a character is,
nor a diff rendered through an attribution map; blame needs exactly that, so
it is done with clock ranges and delete probes (collab.history.blame). See
docs/attribution.md for the measurements.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

ANONYMOUS = "anonymous"  # the author of an open server's connections
SERVER = "server"  # edits the server makes on nobody's behalf (none today)


@dataclass(frozen=True, slots=True)
class Author:
    """Who made an edit. `subject`: the token's `sub` when tokens are on
    (`is_verified`), else "anonymous"; `name`: what the client announced in its
    awareness state (`user.name`), never trusted, only shown."""

    subject: str
    name: str | None = None
    is_verified: bool = False

    @property
    def label(self) -> str:
        return self.name or self.subject


@dataclass(frozen=True, slots=True)
class ClientClaim:
    """Client id `client_id` creates content for `subject` (first claim wins)."""

    client_id: int
    subject: str


# (client id, first clock, end clock): content created, end exclusive.
ClockRange = tuple[int, int, int]
# (text root, characters inserted, characters deleted), in Yjs clock units.
RootCount = tuple[str, int, int]


@dataclass(frozen=True, slots=True)
class EditSession:
    """One author's burst of editing (a session grows until its author goes
    quiet), as it stands; or what one log row added to it (a delta: the same
    fields, its counts and ranges that row's only)."""

    key: int  # random, chosen by the room, under 2**53 (exact in JSON for browsers)
    author: Author
    started_at: float  # Unix seconds
    ended_at: float
    inserted: int  # characters (Yjs clock units) created
    deleted: int  # characters (Yjs clock units) deleted
    ranges: tuple[ClockRange, ...] = ()
    origin: str = "edit"  # "edit", "restore" or "revert"
    # The items it deleted (anybody's), by id: what a revert brings back (stored
    # without those it wrote itself: they never come back).
    deleted_ranges: tuple[ClockRange, ...] = ()
    # Characters inserted and deleted per text root (sessions before 0007: none).
    roots: tuple[RootCount, ...] = ()
    # A restore's: the version it restored, whose authors its text keeps (blame).
    source_version: int | None = None


# A delta's ranges or root counts as decoded: lists of three (JSON arrays).
_Triples = Iterable[Sequence[Any]]

# Who edits the server makes on nobody's behalf are attributed to.
SERVER_AUTHOR = Author(SERVER, is_verified=True)


@dataclass(slots=True)
class GrowingSession:
    """A session being added to: one tick's delta in a room, or a stored session
    with the deltas after it folded on (`grow`). One piece for both, so a
    session folded from its deltas is the one the room would have made."""

    key: int
    author: Author
    started_at: float
    ended_at: float
    origin: str = "edit"
    source_version: int | None = None
    inserted: int = 0
    deleted: int = 0
    ranges: list[ClockRange] = field(default_factory=list)
    deleted_ranges: list[ClockRange] = field(default_factory=list)
    roots: dict[str, tuple[int, int]] = field(default_factory=dict)  # per text root
    # client id -> index in `ranges` of its latest range
    latest: dict[int, int] = field(default_factory=dict)

    @classmethod
    def of(cls, session: EditSession) -> GrowingSession:
        grown = cls(
            session.key,
            session.author,
            session.started_at,
            session.ended_at,
            session.origin,
            session.source_version,
            session.inserted,
            session.deleted,
            list(session.ranges),
            list(session.deleted_ranges),
            {root: (inserted, deleted) for root, inserted, deleted in session.roots},
        )
        for index, (client_id, _, _) in enumerate(grown.ranges):
            grown.latest[client_id] = index
        return grown

    def add(self, client_id: int, start: int, end: int) -> None:
        """Extend the client's latest range if this one continues it, else add one.
        Per client, not only the last range: several clients of one author (tabs,
        anonymous users of an open server) editing in turn would otherwise add a
        range per edit, and the session would grow with every edit
        (bench/RESULTS.md, session 6)."""
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

    def add_root_counts(self, counts: Mapping[str, tuple[int, int]]) -> None:
        for root, (inserted, deleted) in counts.items():
            was_inserted, was_deleted = self.roots.get(root, (0, 0))
            self.roots[root] = (was_inserted + inserted, was_deleted + deleted)

    def grow(self, ended_at: float, ranges: _Triples, deleted: _Triples, roots: _Triples) -> None:
        """Fold on what a later tick added to this session (a delta's parts, as
        `encode_deltas` wrote them)."""
        if ended_at > self.ended_at:
            self.ended_at = ended_at
        for client_id, start, end in ranges:
            self.add(client_id, start, end)
        for client_id, start, end in deleted:
            self.add_deleted(client_id, start, end)
        for root, inserted, removed in roots:
            was_inserted, was_deleted = self.roots.get(root, (0, 0))
            self.roots[root] = (was_inserted + inserted, was_deleted + removed)

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

    def stored(self) -> EditSession:
        """As stored and read back: what it deleted of its own writing never
        comes back (a revert of it takes its insertions out too), so it is not
        kept among its deletions."""
        session = self.frozen()
        if not session.deleted_ranges:
            return session
        others = tuple(subtract_ranges(session.deleted_ranges, session.ranges))
        return replace(session, deleted_ranges=others)


def root_counts(counts: Mapping[str, tuple[int, int]]) -> tuple[RootCount, ...]:
    return tuple((root, inserted, deleted) for root, (inserted, deleted) in sorted(counts.items()))


def fold(
    bases: Mapping[int, tuple[EditSession, int]], rows: Iterable[tuple[int, list[Any]]]
) -> tuple[dict[int, tuple[GrowingSession, int]], list[int]]:
    """Each session the log rows' deltas grow, grown by them: key -> (session, the
    id of the newest log row folded in); and the ids of rows holding a delta
    that is not what `encode_deltas` writes (folded as far as they go).
    `bases`: key -> (stored session, its `through_id`); `rows`: (log row id, its
    deltas as `decode_rows` gives them), in id order. A delta whose row the
    base holds already (id <= its through_id) is skipped."""
    grown: dict[int, tuple[GrowingSession, int] | None] = {}
    changed: set[int] = set()
    bad: list[int] = []
    for row_id, deltas in rows:
        try:
            for key, subject, name, verified, origin, source, started, ended, *parts in deltas:
                if key not in grown:
                    base = bases.get(key)
                    grown[key] = None if base is None else (GrowingSession.of(base[0]), base[1])
                current = grown[key]
                if current is None:
                    author = Author(subject, name, verified)
                    current = (GrowingSession(key, author, started, ended, origin, source), 0)
                elif row_id <= current[1]:
                    continue
                current[0].grow(ended, *parts)
                grown[key] = (current[0], row_id)
                changed.add(key)
        except (TypeError, ValueError, KeyError):
            bad.append(row_id)
    return {key: value for key in changed if (value := grown[key]) is not None}, bad


def delta_keys(rows: Iterable[tuple[int, list[Any]]]) -> set[int]:
    """The sessions the rows' deltas grow (as `decode_rows` gives them)."""
    return {
        delta[0]
        for _, deltas in rows
        if isinstance(deltas, list)
        for delta in deltas
        if isinstance(delta, list) and delta and isinstance(delta[0], int)
    }


def encode_deltas(deltas: Sequence[EditSession]) -> str:
    """What one log row added to each session, as JSON (the row's `sessions`)."""
    return json.dumps(
        [
            [
                d.key,
                d.author.subject,
                d.author.name,
                d.author.is_verified,
                d.origin,
                d.source_version,
                d.started_at,
                d.ended_at,
                d.ranges,
                d.deleted_ranges,
                d.roots,
            ]
            for d in deltas
        ],
        separators=(",", ":"),
    )


def decode_rows(
    rows: Sequence[tuple[int, str]],
) -> tuple[list[tuple[int, list[Any]]], list[int]]:
    """Log rows' `sessions` (what `encode_deltas` wrote), parsed for `fold`: one
    parse for all of them (a compaction folds a thousand rows; parsing each on
    its own cost several times more), and row by row only if that fails, to
    find the rows that do not parse. Returns (row id, deltas) and the ids of
    the rows that did not parse."""
    try:
        parsed = json.loads("[" + ",".join(text for _, text in rows) + "]")
        if isinstance(parsed, list) and len(parsed) == len(rows):
            return [(row_id, deltas) for (row_id, _), deltas in zip(rows, parsed, strict=True)], []
    except ValueError:
        pass
    good: list[tuple[int, list[Any]]] = []
    bad: list[int] = []
    for row_id, text in rows:
        try:
            good.append((row_id, json.loads(text)))
        except ValueError:
            bad.append(row_id)
    return good, bad


def add_range(ranges: list[ClockRange], client_id: int, start: int, end: int) -> None:
    """Append a range, joined to the last one when they touch (typing forward,
    and deleting backwards or forwards, each make one range)."""
    if ranges:
        last_client, last_start, last_end = ranges[-1]
        if last_client == client_id and start <= last_end and end >= last_start:
            ranges[-1] = (client_id, min(start, last_start), max(end, last_end))
            return
    ranges.append((client_id, start, end))


def subtract_ranges(ranges: Sequence[ClockRange], taken: Sequence[ClockRange]) -> list[ClockRange]:
    """`ranges` without the clocks `taken` covers (per client id)."""
    cuts: dict[int, list[tuple[int, int]]] = {}
    for client_id, start, end in sorted(taken):
        merged = cuts.setdefault(client_id, [])
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    left: list[ClockRange] = []
    for client_id, start, end in ranges:
        merged = cuts.get(client_id, [])
        index = max(0, bisect_right(merged, (start, start)) - 1)
        at = start
        for cut_start, cut_end in merged[index:]:
            if cut_start >= end:
                break
            if cut_start > at:
                left.append((client_id, at, cut_start))
            at = max(at, cut_end)
        if at < end:
            left.append((client_id, at, end))
    return left


def encode_ranges(ranges: tuple[ClockRange, ...]) -> str:
    """JSON [[client, start, end], ...]. Written out by hand, as json.dumps would
    for integers: it runs on every commit of an edit (the session row)."""
    return "[" + ",".join([f"[{c:d},{s:d},{e:d}]" for c, s, e in ranges]) + "]"


def decode_ranges(text: str | None) -> tuple[ClockRange, ...]:
    return tuple((int(c), int(s), int(e)) for c, s, e in json.loads(text or "[]"))


def encode_root_counts(session: EditSession) -> str | None:
    """JSON {root: [inserted, deleted]}; just the root's name (a JSON string)
    when one root holds all the session's counts (the common case: one text)."""
    if not session.roots:
        return None
    if len(session.roots) == 1:
        root, inserted, deleted = session.roots[0]
        if (inserted, deleted) == (session.inserted, session.deleted):
            return _json_string(root)
    return json.dumps({r: [i, d] for r, i, d in session.roots}, separators=(",", ":"))


@lru_cache(maxsize=256)
def _json_string(text: str) -> str:
    """A root's name as a JSON string (a session row names its root on every commit)."""
    return json.dumps(text)


def decode_root_counts(text: str | None, inserted: int, deleted: int) -> tuple[RootCount, ...]:
    """What `encode_root_counts` wrote, given the session's totals."""
    if not text:
        return ()
    value = json.loads(text)
    if isinstance(value, str):
        return ((value, inserted, deleted),)
    return tuple((str(r), int(i), int(d)) for r, (i, d) in value.items())


@dataclass(frozen=True, slots=True)
class StoredSession:
    """An `EditSession` read back, with its document."""

    document: str
    session: EditSession
