"""Restore a live document to a snapshot's content, as new operations.

A CRDT cannot be rolled back by replacing its state: every client still holds
the newer items and would merge them straight back. So a restore is an edit
like any other: the difference between the current content and the snapshot's,
applied to the live Doc in ONE transaction (origin "restore"), which the room
stores and relays as one update. Concurrent edits merge with it as usual.

The difference is kept small on purpose: whatever is unchanged keeps its Yjs
items, so cursors (relative positions) and concurrent edits anchored there stay
where they are. Text is diffed by character (`collab.textdiff`), then its
formatting is made equal run by run; map entries are set or deleted only when
they differ; array elements are matched by a fingerprint of their content and
only the unmatched ones are deleted or inserted. A nested shared type is
restored in place when the current value is the same kind of type, otherwise it
is replaced by a copy built as prelim types (types stay types).

Root types come from `collab.content.root_kinds` of the snapshot; a root the
snapshot lacks or holds empty is emptied according to its current kind.

Never touched: XML roots (Y.XmlFragment/XmlElement, as y-prosemirror uses; the
inference reads them as empty). XML nodes and subdocuments nested in maps,
arrays or texts are never copied: in a map or array, the ones the snapshot lacks
are deleted and the others left alone; embedded in a text, they are removed.
Other text embeds are kept, deleted or inserted like characters, compared by
value. A string embed looks like characters in `Text.diff()`; when it cannot be
told apart for certain, that one text is left as it is (and a warning logged).

Text indices: pycrdt 0.14 counts Y.Text positions in UTF-8 bytes (yrs'
default offset kind), not in code points like Python nor UTF-16 units like
Yjs; an embed counts 1, and an index inside a character makes yrs panic. The
diff works on Python strings, so every position is converted; the unit is
measured on a scratch Doc at each restore, so a pycrdt that changes it stays
correct.
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from collab.content import RootKind, root_kinds
from collab.textdiff import Hunk, diff_text

logger = logging.getLogger(__name__)

ORIGIN = "restore"

Attrs = dict[str, Any]
TextRuns = list[tuple[Any, Attrs | None]]  # what `Text.diff()` returns
SharedType = Text | Map | Array

_UNTOUCHED_TYPES = (XmlElement, XmlFragment, XmlText, Doc)
# Embeds are stood in for by characters from the supplementary private use
# planes: all of them have the same width in every unit a Y.Text may count in.
_FIRST_EMBED_MARK, _LAST_EMBED_MARK = 0xF0000, 0x10FFFD


def restore_doc(doc: Doc, target_state: bytes) -> bool:
    """Make `doc`'s content equal that of the full-state update `target_state`,
    with as few operations as practical, in one transaction. Returns whether
    anything changed. Raises ValueError if `target_state` is not a Yjs update."""
    target = Doc()
    target.apply_update(target_state)
    target_kinds, current_kinds = root_kinds(target_state), root_kinds(doc.get_update())
    units = _TextUnits.measured()
    changed = False
    with doc.transaction(origin=ORIGIN):
        for name in sorted(target_kinds.keys() | current_kinds.keys()):
            changed |= _restore_root(
                doc,
                target,
                name,
                target_kinds.get(name, "empty"),
                current_kinds.get(name, "empty"),
                units,
            )
    return changed


def _restore_root(
    doc: Doc,
    target: Doc,
    name: str,
    target_kind: RootKind,
    current_kind: RootKind,
    units: _TextUnits,
) -> bool:
    kind = current_kind if target_kind == "empty" else target_kind
    changed = False
    if current_kind not in ("empty", kind):
        # The root now reads as another type: clear that reading first.
        changed = _sync(_typed_root(doc, name, current_kind), _empty(current_kind), units)
    if kind != "empty":
        wanted = _empty(kind) if target_kind == "empty" else _typed_root(target, name, kind)
        changed |= _sync(_typed_root(doc, name, kind), wanted, units)
    return changed


def _typed_root(doc: Doc, name: str, kind: RootKind) -> SharedType:
    shared_type = {"text": Text, "map": Map, "array": Array}[kind]
    root: SharedType = doc.get(name, type=shared_type)
    return root


def _empty(kind: RootKind) -> SharedType:
    """A prelim value standing for "this root holds nothing"."""
    return {"text": Text, "map": Map, "array": Array}[kind]()


def _sync(current: SharedType, wanted: SharedType, units: _TextUnits) -> bool:
    """Make `current` hold what `wanted` holds; both are the same kind of type."""
    if isinstance(current, Text):
        assert isinstance(wanted, Text)
        return _sync_text(current, wanted, units)
    if isinstance(current, Map):
        return _sync_map(current, _entries_of(wanted), units)
    return _sync_array(current, _items_of(wanted), units)


def _entries_of(ymap: SharedType) -> dict[str, Any]:
    assert isinstance(ymap, Map)
    return dict(ymap.items()) if ymap.is_integrated else {}


def _items_of(array: SharedType) -> list[Any]:
    assert isinstance(array, Array)
    return list(array) if array.is_integrated else []


# -- text ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _TextUnits:
    """How a Y.Text counts positions, measured rather than assumed."""

    measure: Callable[[str], int]

    @classmethod
    def measured(cls) -> _TextUnits:
        scratch = Doc()
        probe = scratch.get("probe", type=Text)
        probe += "\U0001f680"  # 1 code point, 2 UTF-16 units, 4 UTF-8 bytes
        measures: dict[int, Callable[[str], int]] = {1: len, 2: _utf16_len, 4: _utf8_len}
        width = len(probe)
        if width not in measures:
            raise RuntimeError(f"pycrdt counts a non-BMP character as {width} text positions")
        return cls(measures[width])


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8"))


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


@dataclass(frozen=True, slots=True)
class _Flattened:
    """Two texts' runs as Python strings, each embed as one marker character."""

    old: str
    new: str
    marks: dict[str, str]  # embed fingerprint -> its marker
    units: _TextUnits

    @classmethod
    def of(cls, old_runs: TextRuns, new_runs: TextRuns, units: _TextUnits) -> _Flattened:
        embeds = [chunk for chunk, _ in [*old_runs, *new_runs] if not isinstance(chunk, str)]
        marks: dict[str, str] = {}
        if embeds:
            used = set().union(
                *(chunk for chunk, _ in [*old_runs, *new_runs] if isinstance(chunk, str))
            )
            free = (chr(c) for c in range(_FIRST_EMBED_MARK, _LAST_EMBED_MARK + 1))
            free_marks = (mark for mark in free if mark not in used)
            for embed in embeds:
                fingerprint = _fingerprint(embed)
                if fingerprint not in marks:
                    marks[fingerprint] = next(free_marks)
        flat = cls("", "", marks, units)
        return cls(flat.flatten(old_runs), flat.flatten(new_runs), marks, units)

    def flatten(self, runs: TextRuns) -> str:
        return "".join(self.chunk_text(chunk) for chunk, _ in runs)

    def chunk_text(self, chunk: Any) -> str:
        return chunk if isinstance(chunk, str) else self.marks[_fingerprint(chunk)]

    def width(self, text: str) -> int:
        """`text`'s length in the Y.Text's unit; an embed counts 1."""
        size = self.units.measure(text)
        if self.marks:
            marker_size = self.units.measure(chr(_FIRST_EMBED_MARK))
            size -= (marker_size - 1) * sum(map(text.count, self.marks.values()))
        return size


@dataclass(frozen=True, slots=True)
class _Run:
    start: int  # in code points of the flattened text
    end: int
    chunk: Any  # a str or one embed
    attrs: Attrs


def _runs_with_offsets(runs: TextRuns, flat: _Flattened) -> list[_Run]:
    located, start = [], 0
    for chunk, attrs in runs:
        end = start + len(flat.chunk_text(chunk))
        located.append(_Run(start, end, chunk, attrs or {}))
        start = end
    return located


@dataclass(frozen=True, slots=True)
class _StringEmbed:
    """A string inserted as an embed, which `Text.diff()` shows like characters
    although it counts 1 position."""

    value: str


def _read_runs(text: Text, units: _TextUnits) -> TextRuns | None:
    """`text.diff()` with string embeds told apart from characters, or None when
    that cannot be done for certain."""
    if not text.is_integrated:
        return []
    plain, runs = str(text), text.diff()
    is_text = [isinstance(chunk, str) for chunk, _ in runs]
    if "".join(chunk for chunk, _ in runs if isinstance(chunk, str)) != plain:
        aligned = _align_characters(plain, [chunk for chunk, _ in runs])
        if aligned is None:
            return None
        is_text = aligned
    if units.measure(plain) + is_text.count(False) != len(text):
        return None
    return [
        (_StringEmbed(chunk) if isinstance(chunk, str) and not keep else chunk, attrs)
        for (chunk, attrs), keep in zip(runs, is_text, strict=True)
    ]


def _align_characters(plain: str, chunks: list[Any]) -> list[bool] | None:
    """Which chunks are characters, given that those concatenate to `plain`
    (`str(text)` leaves embeds out); None unless exactly one choice fits."""
    ways: list[dict[int, int]] = [{0: 1}]  # after each chunk: offset -> ways (max 2)
    for chunk in chunks:
        reached: dict[int, int] = {}
        for at, count in ways[-1].items():
            reached[at] = min(2, reached.get(at, 0) + count)  # the chunk is an embed
            if isinstance(chunk, str) and plain.startswith(chunk, at):
                end = at + len(chunk)
                reached[end] = min(2, reached.get(end, 0) + count)
        ways.append(reached)
    if ways[-1].get(len(plain)) != 1:
        return None
    is_text, at = [], len(plain)
    for index in range(len(chunks) - 1, -1, -1):
        chunk = chunks[index]
        start = at - len(chunk) if isinstance(chunk, str) else -1
        # A unique way has exactly one predecessor with a way to it.
        if start >= 0 and plain.startswith(chunk, start) and ways[index].get(start):
            is_text.append(True)
            at = start
        else:
            is_text.append(False)
    return is_text[::-1]


def _sync_text(text: Text, target: Text, units: _TextUnits) -> bool:
    have, wanted = _read_runs(text, units), _read_runs(target, units)
    if have is None or wanted is None:
        # Guessing would risk an index inside a character, which makes yrs panic.
        logger.warning("restore: a text left as it is, its string embeds are ambiguous")
        return False
    wanted = [(chunk, attrs) for chunk, attrs in wanted if not isinstance(chunk, _UNTOUCHED_TYPES)]
    flat = _Flattened.of(have, wanted, units)
    changed = False
    if flat.old != flat.new:
        _apply_hunks(text, diff_text(flat.old, flat.new), _runs_with_offsets(wanted, flat), flat)
        changed = True
    return _sync_formatting(text, wanted, flat) or changed


def _apply_hunks(text: Text, hunks: list[Hunk], wanted: list[_Run], flat: _Flattened) -> None:
    """Apply the hunks left to right; `position` is where the next one starts in
    the Y.Text as it is now, so earlier edits never shift a later one."""
    position, wanted_ends = 0, [run.end for run in wanted]
    for hunk in hunks:
        width = flat.width(hunk.text)
        if hunk.op == "delete":
            del text[position : position + width]
            continue
        if hunk.op == "insert":
            first = bisect_right(wanted_ends, hunk.new_start)
            _insert_runs(text, position, hunk, wanted[first:], flat)
        position += width


def _insert_runs(
    text: Text, position: int, hunk: Hunk, wanted: list[_Run], flat: _Flattened
) -> None:
    """Insert the hunk run by run, each with the snapshot's formatting (an empty
    dict also stops the new text inheriting its left neighbour's)."""
    start, end = hunk.new_start, hunk.new_start + len(hunk.text)
    for run in wanted:  # from the first run ending after `start`
        if run.start >= end:
            break
        if isinstance(run.chunk, str):
            piece = run.chunk[max(start, run.start) - run.start : min(end, run.end) - run.start]
            text.insert(position, piece, dict(run.attrs))
            position += flat.width(piece)
        else:
            _insert_embed(text, position, run, flat.units)
            position += 1


def _insert_embed(text: Text, position: int, run: _Run, units: _TextUnits) -> None:
    copy = _copy_of(run.chunk)
    text.insert_embed(position, copy, dict(run.attrs))
    if isinstance(copy, SharedType):
        _sync(copy, run.chunk, units)


def _sync_formatting(text: Text, wanted: TextRuns, flat: _Flattened) -> bool:
    """Make every attribute equal the snapshot's: set what differs, and remove
    (set to None) what the snapshot does not have."""
    have = _read_runs(text, flat.units)
    if have is None:
        return False
    changes = _format_changes(_attribute_spans(have, flat), _attribute_spans(wanted, flat))
    for start, end, attrs in changes:
        text.format(start, end, attrs)
    return bool(changes)


def _attribute_spans(runs: TextRuns, flat: _Flattened) -> list[tuple[int, int, Attrs]]:
    """(start, end, attrs) of each run, in the Y.Text's unit."""
    spans, start = [], 0
    for chunk, attrs in runs:
        end = start + (flat.width(chunk) if isinstance(chunk, str) else 1)
        spans.append((start, end, attrs or {}))
        start = end
    return spans


def _format_changes(
    have: list[tuple[int, int, Attrs]], want: list[tuple[int, int, Attrs]]
) -> list[tuple[int, int, Attrs]]:
    """Walk both run lists over their common boundaries; neighbouring ranges
    needing the same change are joined into one `format` call."""
    changes: list[tuple[int, int, Attrs]] = []
    i = j = start = 0
    while i < len(have) and j < len(want):
        end = min(have[i][1], want[j][1])
        change = _attribute_change(have[i][2], want[j][2])
        if (
            change
            and changes
            and changes[-1][1] == start
            and _fingerprint(changes[-1][2]) == _fingerprint(change)
        ):
            changes[-1] = (changes[-1][0], end, change)
        elif change:
            changes.append((start, end, change))
        i, j, start = i + (have[i][1] == end), j + (want[j][1] == end), end
    return changes


def _attribute_change(have: Attrs, want: Attrs) -> Attrs:
    return {
        key: want.get(key)
        for key in sorted(have.keys() | want.keys())
        if _fingerprint(have.get(key)) != _fingerprint(want.get(key))
    }


# -- maps ----------------------------------------------------------------------


def _sync_map(current: Map, wanted: dict[str, Any], units: _TextUnits) -> bool:
    stale = [key for key in current.keys() if key not in wanted]
    for key in stale:
        del current[key]
    changed = bool(stale)
    for key, value in wanted.items():
        changed |= _sync_entry(current, key, value, units)
    return changed


def _sync_entry(current: Map, key: str, wanted: Any, units: _TextUnits) -> bool:
    if isinstance(wanted, _UNTOUCHED_TYPES):
        return False
    if key in current:
        have = current[key]
        if _is_same_type(have, wanted):
            return _sync(have, wanted, units)
        if _fingerprint(have) == _fingerprint(wanted):
            return False
    current[key] = copy = _copy_of(wanted)
    if isinstance(copy, SharedType):
        _sync(copy, wanted, units)
    return True


# -- arrays --------------------------------------------------------------------


def _sync_array(current: Array, wanted: list[Any], units: _TextUnits) -> bool:
    have = list(current)
    matcher = SequenceMatcher(
        None, [_fingerprint(v) for v in have], [_fingerprint(v) for v in wanted], autojunk=False
    )
    changed = False
    # Right to left: a region's edits never shift the indices of those before it.
    for tag, i1, i2, j1, j2 in reversed(matcher.get_opcodes()):
        if tag != "equal":
            _sync_array_region(current, i1, have[i1:i2], wanted[j1:j2], units)
            changed = True
    return changed


def _sync_array_region(
    current: Array, at: int, have: list[Any], wanted: list[Any], units: _TextUnits
) -> None:
    """Within a changed region, line up elements by kind: a current shared type
    facing one of the same kind is restored in place (it keeps its identity);
    everything else is deleted or inserted."""
    kinds = SequenceMatcher(
        None, [_kind_name(v) for v in have], [_kind_name(v) for v in wanted], autojunk=False
    )
    for tag, i1, i2, j1, j2 in reversed(kinds.get_opcodes()):
        if tag != "equal":
            if i2 > i1:
                del current[at + i1 : at + i2]
            _insert_items(current, at + i1, wanted[j1:j2], units)
            continue
        for offset in reversed(range(i2 - i1)):
            old, new = have[i1 + offset], wanted[j1 + offset]
            if _is_same_type(old, new):
                _sync(old, new, units)
            elif _fingerprint(old) != _fingerprint(new):
                del current[at + i1 + offset]
                _insert_items(current, at + i1 + offset, [new], units)


def _kind_name(value: Any) -> str:
    if isinstance(value, SharedType):
        return type(value).__name__
    return "opaque" if isinstance(value, _UNTOUCHED_TYPES) else "value"


def _insert_items(current: Array, at: int, items: Iterable[Any], units: _TextUnits) -> None:
    for item in items:
        if isinstance(item, _UNTOUCHED_TYPES):
            continue
        copy = _copy_of(item)
        current.insert(at, copy)
        if isinstance(copy, SharedType):
            _sync(copy, item, units)
        at += 1


# -- values --------------------------------------------------------------------


def _is_same_type(have: Any, wanted: Any) -> bool:
    return isinstance(wanted, SharedType) and type(have) is type(wanted)


def _copy_of(value: Any) -> Any:
    """A prelim copy of a snapshot value: shared types stay shared types. Text
    formatting and embeds are not part of a prelim; `_sync` adds them once the
    copy is in the document."""
    if isinstance(value, _StringEmbed):
        return value.value
    if isinstance(value, Text):
        return Text(str(value))
    if isinstance(value, Map):
        return Map(
            {k: _copy_of(v) for k, v in value.items() if not isinstance(v, _UNTOUCHED_TYPES)}
        )
    if isinstance(value, Array):
        return Array([_copy_of(v) for v in value if not isinstance(v, _UNTOUCHED_TYPES)])
    return _writable(value)


def _writable(value: Any) -> Any:
    """Plain values as pycrdt accepts them: it reads binary back as bytearray
    but only writes bytes."""
    if isinstance(value, bytearray):
        return bytes(value)
    if isinstance(value, dict):
        return {k: _writable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_writable(v) for v in value]
    return value


def _fingerprint(value: Any) -> str:
    """Equal for equal content, and distinct where Python's == is too lenient:
    True, 1 and 1.0 differ; so do a shared type and its plain-value twin."""
    return json.dumps(_tagged(value), sort_keys=True, default=repr)


def _tagged(value: Any) -> Any:
    if isinstance(value, Text):
        return ["text", [[_tagged(chunk), attrs] for chunk, attrs in value.diff()]]
    if isinstance(value, Map):
        return ["map", {k: _tagged(v) for k, v in value.items()}]
    if isinstance(value, Array):
        return ["array", [_tagged(v) for v in value]]
    if isinstance(value, XmlElement | XmlFragment | XmlText):
        return ["xml", str(value)]
    if isinstance(value, Doc):
        return ["doc", value.guid]
    if isinstance(value, _StringEmbed):
        return ["string-embed", value.value]
    if isinstance(value, bytes | bytearray):
        return ["bytes", value.hex()]
    if isinstance(value, dict):
        return ["object", {k: _tagged(v) for k, v in value.items()}]
    if isinstance(value, list):
        return ["list", [_tagged(v) for v in value]]
    return ["value", value]
