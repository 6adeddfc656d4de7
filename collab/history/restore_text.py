"""Restore one Y.Text: content by a character diff, then formatting run by run.

Split from collab.history.restore, which owns the document-level rules; see its
docstring for why a restore is new operations. This module owns what is
particular to Y.Text: positions are counted in the unit pycrdt uses (measured,
see `TextUnits`), embeds stand in as marker characters while diffing, and
formatting is made equal only where it differs, so unchanged runs keep their
Yjs items (and the cursors anchored in them).
"""

from __future__ import annotations

import json
import logging
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment, XmlText

from collab.history.textdiff import Hunk, diff_text

logger = logging.getLogger(__name__)

Attrs = dict[str, Any]
TextRuns = list[tuple[Any, Attrs | None]]  # what `Text.diff()` returns

# Never copied by a restore: XML nodes (y-prosemirror) and subdocuments.
UNTOUCHED_TYPES = (XmlElement, XmlFragment, XmlText, Doc)
# Inserts a copy of an embedded value (a shared type is copied recursively).
EmbedInserter = Callable[[Text, int, Any, Attrs], None]

# Embeds are stood in for by characters from the supplementary private use
# planes: all of them have the same width in every unit a Y.Text may count in.
_FIRST_EMBED_MARK, _LAST_EMBED_MARK = 0xF0000, 0x10FFFD


@dataclass(frozen=True, slots=True)
class TextUnits:
    """How a Y.Text counts positions, measured rather than assumed."""

    measure: Callable[[str], int]

    @classmethod
    def measured(cls) -> TextUnits:
        scratch: Doc[Text] = Doc()
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
    units: TextUnits

    @classmethod
    def of(cls, old_runs: TextRuns, new_runs: TextRuns, units: TextUnits) -> _Flattened:
        embeds = [chunk for chunk, _ in [*old_runs, *new_runs] if not isinstance(chunk, str)]
        marks: dict[str, str] = {}
        if embeds:
            used = set().union(
                *(chunk for chunk, _ in [*old_runs, *new_runs] if isinstance(chunk, str))
            )
            free = (chr(c) for c in range(_FIRST_EMBED_MARK, _LAST_EMBED_MARK + 1))
            free_marks = (mark for mark in free if mark not in used)
            for embed in embeds:
                key = fingerprint(embed)
                if key not in marks:
                    marks[key] = next(free_marks)
        flat = cls("", "", marks, units)
        return cls(flat.flatten(old_runs), flat.flatten(new_runs), marks, units)

    def flatten(self, runs: TextRuns) -> str:
        return "".join(self.chunk_text(chunk) for chunk, _ in runs)

    def chunk_text(self, chunk: Any) -> str:
        return chunk if isinstance(chunk, str) else self.marks[fingerprint(chunk)]

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
class StringEmbed:
    """A string inserted as an embed, which `Text.diff()` shows like characters
    although it counts 1 position."""

    value: str


def _read_runs(text: Text, units: TextUnits) -> TextRuns | None:
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
        (StringEmbed(chunk) if isinstance(chunk, str) and not keep else chunk, attrs)
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


def sync_text(text: Text, target: Text, units: TextUnits, insert_embed: EmbedInserter) -> bool:
    """Make `text` equal `target` in content and formatting; returns whether it changed."""
    have, wanted = _read_runs(text, units), _read_runs(target, units)
    if have is None or wanted is None:
        # Guessing would risk an index inside a character, which makes yrs panic.
        logger.warning("restore: a text left as it is, its string embeds are ambiguous")
        return False
    wanted = [(chunk, attrs) for chunk, attrs in wanted if not isinstance(chunk, UNTOUCHED_TYPES)]
    flat = _Flattened.of(have, wanted, units)
    changed = False
    if flat.old != flat.new:
        runs = _runs_with_offsets(wanted, flat)
        _apply_hunks(text, diff_text(flat.old, flat.new), runs, flat, insert_embed)
        changed = True
    return _sync_formatting(text, wanted, flat) or changed


def _apply_hunks(
    text: Text,
    hunks: list[Hunk],
    wanted: list[_Run],
    flat: _Flattened,
    insert_embed: EmbedInserter,
) -> None:
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
            _insert_runs(text, position, hunk, wanted[first:], flat, insert_embed)
        position += width


def _insert_runs(
    text: Text,
    position: int,
    hunk: Hunk,
    wanted: list[_Run],
    flat: _Flattened,
    insert_embed: EmbedInserter,
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
            insert_embed(text, position, run.chunk, dict(run.attrs))
            position += 1


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
            and fingerprint(changes[-1][2]) == fingerprint(change)
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
        if fingerprint(have.get(key)) != fingerprint(want.get(key))
    }


def fingerprint(value: Any) -> str:
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
    if isinstance(value, StringEmbed):
        return ["string-embed", value.value]
    if isinstance(value, bytes | bytearray):
        return ["bytes", value.hex()]
    if isinstance(value, dict):
        return ["object", {k: _tagged(v) for k, v in value.items()}]
    if isinstance(value, list):
        return ["list", [_tagged(v) for v in value]]
    return ["value", value]
