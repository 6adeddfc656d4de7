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

Why not pycrdt's `IdMap`/`ContentAttribute`: they hold ranges with attributes
well, but pycrdt 0.14 offers no way to ask a Doc which item a character is,
nor a diff rendered through an attribution map; blame needs exactly that, so
it is done with clock ranges and delete probes (collab.history.blame). See
docs/attribution.md for the measurements.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

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
    """One author's burst of editing, as it stands now (written as an upsert on
    (document, `key`): a session grows until its author goes quiet)."""

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


# Who edits the server makes on nobody's behalf are attributed to.
SERVER_AUTHOR = Author(SERVER, is_verified=True)


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
