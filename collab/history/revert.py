"""A revert as one update: an author's insertions taken out, their deletions put back.

Reverting what one person did in a window means two things. Their text still
present goes: an update holding only a delete set of the clock ranges their
sessions created (exact, whoever edited around it). And the text they deleted
comes back. That text is gone from the live Doc (deleted content is
garbage-collected), so it is read from a stored state from before the window,
where those items are still alive: a delete probe on that state
(`collab.history.blame.spans_deleted_by`) says which of its characters they
are. Where each goes now is found by identity, not by comparing text: its
anchor is the nearest character to its left in that state that is still in
the document, and deleting, on a copy of the current state, every item the old
state knew cuts exactly those survivors, in the same order, at their current
positions. The text comes back right after its anchor, as new items (a CRDT
cannot revive deleted ones), with the formatting it had; what others deleted
stays deleted, and others' later edits stay.

Only text roots' characters come back (not map entries, array elements or
embeds), with the formatting they had. Text the author deleted that was written
after that state (by someone else, inside the window) is not in it and cannot
come back: the result says so.

A pure job, bytes and ranges in, an update out: it runs in a compute worker
(collab.history.workers), never on the event loop. Its operations are made on
a scratch Doc holding the current state; the live Doc takes them like a
restore's, merging with anything that arrived meanwhile.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from pycrdt import Doc, Text, merge_updates

from collab.history.blame import delete_set_update, spans_deleted_by
from collab.history.restore_text import TextUnits
from collab.protocol.codec import decode_state_vector
from collab.protocol.update_ids import update_ids
from collab.storage.attribution import ClockRange, subtract_ranges

ORIGIN = "revert"


@dataclass(frozen=True, slots=True)
class RevertPlan:
    """`update`: the revert's operations (None: nothing to change);
    `restored_chars`: characters of deleted text it brings back; `missing`:
    why some deleted text cannot come back (None: all of it does)."""

    update: bytes | None
    restored_chars: int
    missing: str | None


def revert_update(
    current_state: bytes,
    inserted: Sequence[ClockRange],
    deleted: Sequence[ClockRange],
    before_state: bytes | None,
) -> RevertPlan:
    """The operations that undo, on a Doc holding `current_state`, the
    insertions `inserted` names and the deletions `deleted` names (the items a
    session deleted), reading the deleted text from `before_state` (a state
    from before those deletions; None: none is kept)."""
    scratch: Doc[Any] = Doc()
    scratch.apply_update(current_state)
    made: list[bytes] = []
    subscription = scratch.observe(lambda event: made.append(event.update))
    # The author's own text they deleted goes with their insertions: not back.
    wanted = subtract_ranges(deleted, inserted)
    missing = None
    restored = 0
    try:
        with scratch.transaction(origin=ORIGIN):
            scratch.apply_update(delete_set_update(inserted))
        if wanted and before_state is None:
            missing = (
                "no version from before the window is kept (none was taken, "
                "or retention removed it)"
            )
        elif wanted and before_state is not None:
            with scratch.transaction(origin=ORIGIN):
                restored, skipped = _put_back(scratch, before_state, wanted)
            if skipped:
                missing = f"text roots left as they are (they hold embeds): {', '.join(skipped)}"
            elif _is_written_after(wanted, before_state):
                missing = (
                    "some of the deleted text was written after the newest version "
                    "from before the window, which does not hold it"
                )
    finally:
        scratch.unobserve(subscription)
    if not made:
        return RevertPlan(None, 0, missing)
    return RevertPlan(made[0] if len(made) == 1 else merge_updates(*made), restored, missing)


def _clocks_of(state: bytes) -> dict[int, int]:
    scratch: Doc[Any] = Doc()
    scratch.apply_update(state)
    return decode_state_vector(scratch.get_state())


def _is_written_after(ranges: Sequence[ClockRange], state: bytes) -> bool:
    clocks = _clocks_of(state)
    return any(end > clocks.get(client_id, 0) for client_id, _, end in ranges)


def _put_back(
    scratch: Doc[Any], before_state: bytes, wanted: Sequence[ClockRange]
) -> tuple[int, list[str]]:
    """Insert into `scratch`'s text roots the characters of `before_state` that
    the items `wanted` were, each after the character that preceded it then and
    is still there (found by identity, not by comparing text); returns how many,
    and the text roots left as they are (embeds: positions are not characters)."""
    current_state = scratch.get_update()
    wanted_spans = spans_deleted_by(before_state, wanted)
    if not wanted_spans:
        return 0, []
    # In the old state: which characters are gone now (the rest survive) ...
    gone_then = spans_deleted_by(before_state, update_ids(current_state).deleted_ranges)
    # ... and where, now, the survivors are: deleting every item the old state
    # knew, from a copy of the current one, cuts exactly them, in the same order.
    era = [(client_id, 0, clock) for client_id, clock in _clocks_of(before_state).items()]
    survivors_now = spans_deleted_by(current_state, era)
    units = TextUnits.measured()
    before: Doc[Any] = Doc()
    before.apply_update(before_state)
    restored, skipped = 0, []
    for name, spans in wanted_spans.items():
        old_runs, text = before.get(name, type=Text).diff(), scratch.get(name, type=Text)
        if _has_embeds(old_runs) or _has_embeds(text.diff()):
            skipped.append(name)  # positions would not be characters
            continue
        old = "".join(chunk for chunk, _ in old_runs)
        anchors = _Anchors(old, gone_then.get(name, []), survivors_now.get(name, []))
        if not anchors.is_consistent:
            skipped.append(name)
            continue
        restored += _insert_at_anchors(text, old, spans, anchors, _attrs_by_char(old_runs), units)
    return restored, skipped


def _has_embeds(runs: list[tuple[Any, Any]]) -> bool:
    return any(not isinstance(chunk, str) for chunk, _ in runs)


class _Anchors:
    """Where, in the current text, the character after which an old position's
    text goes: the nearest surviving old character to its left."""

    def __init__(
        self, old: str, gone_then: list[tuple[int, int]], survivors_now: list[tuple[int, int]]
    ) -> None:
        # Old surviving spans, and the number of survivors before each.
        self._spans: list[tuple[int, int]] = []
        at = 0
        for start, end in [*gone_then, (len(old), len(old))]:
            if start > at:
                self._spans.append((at, start))
            at = max(at, end)
        self._before = list(accumulate((e - s for s, e in self._spans), initial=0))
        self._now = [p for start, end in survivors_now for p in range(start, end)]
        self.is_consistent = self._before[-1] == len(self._now)

    def position_for(self, old_position: int) -> int:
        """The current character offset to insert old text starting at `old_position`."""
        index = bisect_right(self._spans, (old_position, old_position)) - 1
        survivors = 0
        if index >= 0:
            start, end = self._spans[index]
            survivors = self._before[index] + min(end, old_position) - start
        return self._now[survivors - 1] + 1 if survivors else 0


def _insert_at_anchors(
    text: Text,
    old: str,
    spans: list[tuple[int, int]],
    anchors: _Anchors,
    attrs_at: list[tuple[int, dict[str, Any]]],
    units: TextUnits,
) -> int:
    """Insert the old text of `spans` at their anchors, right to left (so each
    insert leaves the positions before it as they were)."""
    current = str(text)
    groups: dict[int, list[tuple[int, int]]] = {}
    for start, end in spans:
        groups.setdefault(anchors.position_for(start), []).append((start, end))
    restored = 0
    for position in sorted(groups, reverse=True):
        at = units.measure(current[:position])
        for start, end in groups[position]:
            for piece_start, piece_end, attrs in _pieces(start, end, attrs_at):
                piece = old[piece_start:piece_end]
                text.insert(at, piece, attrs)
                at += units.measure(piece)
                restored += len(piece)
    return restored


def _attrs_by_char(
    runs: list[tuple[Any, dict[str, Any] | None]],
) -> list[tuple[int, dict[str, Any]]]:
    """(start, attributes) of each run, in characters."""
    starts, at = [], 0
    for chunk, attrs in runs:
        starts.append((at, dict(attrs or {})))
        at += len(chunk)
    return starts


def _pieces(
    start: int, end: int, attrs_at: list[tuple[int, dict[str, Any]]]
) -> list[tuple[int, int, dict[str, Any]]]:
    """[start, end) split where the formatting changes."""
    pieces = []
    first = max(0, bisect_right(attrs_at, start, key=lambda run: run[0]) - 1)
    for index in range(first, len(attrs_at)):
        run_start, attrs = attrs_at[index]
        if run_start >= end:
            break
        run_end = attrs_at[index + 1][0] if index + 1 < len(attrs_at) else end
        piece_start, piece_end = max(start, run_start), min(end, run_end)
        if piece_end > piece_start:
            pieces.append((piece_start, piece_end, attrs))
    return pieces
