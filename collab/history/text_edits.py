"""Edit one Y.Text of a live Doc the way a program asks to: a delta by index, or
"make it read this" as minimal edits.

What the HTTP editing API (collab.api.editing) applies through a room. Both
functions change the Doc synchronously and either completely or not at all: a
delta is checked against the text before its first operation is applied.

Positions in a delta count Unicode code points (Python's `str` indices), the
unit a JSON caller sees; pycrdt counts its own unit (see
collab.history.restore_text.TextUnits), so every position is converted here.

`replace_text` diffs by character (collab.history.textdiff) and applies only the
hunks, like a restore: text that stays keeps its Yjs items, so the cursors of
the people editing (relative positions) stay where they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pycrdt import Array, Doc, Map, Text

from collab.errors import CollabError
from collab.history.restore_text import Attrs, TextUnits, sync_text


class TextEditRefused(CollabError):
    """The edit does not fit the text (HTTP 422): the Doc is unchanged."""


@dataclass(frozen=True, slots=True)
class Retain:
    count: int


@dataclass(frozen=True, slots=True)
class Insert:
    text: str


@dataclass(frozen=True, slots=True)
class Delete:
    count: int


DeltaOp = Retain | Insert | Delete


def text_root(doc: Doc[Any], root: str) -> Text:
    """The root `root` read as a Y.Text; refused if it holds a map or a list."""
    if len(doc.get(root, type=Map)):
        raise TextEditRefused(f"root {root!r} holds a map, not a text")
    text: Text = doc.get(root, type=Text)
    if not text.diff() and len(doc.get(root, type=Array)):
        raise TextEditRefused(f"root {root!r} holds a list, not a text")
    return text


def plain_text(text: Text) -> str:
    """The characters of `text`; refused if it embeds anything (an index into
    such a text is ambiguous for a JSON caller)."""
    pieces: list[str] = []
    for chunk, _attrs in text.diff():
        if not isinstance(chunk, str):
            raise TextEditRefused("this text holds embedded objects: it cannot be edited by index")
        pieces.append(chunk)
    return "".join(pieces)


def apply_delta(text: Text, delta: Sequence[DeltaOp]) -> None:
    """Apply a Yjs-shaped delta (retain / insert / delete, left to right).
    Raises `TextEditRefused` (nothing applied) if a retain or delete reaches
    past the end of the text."""
    current = plain_text(text)
    reach = 0
    for op in delta:
        if not isinstance(op, Insert):
            reach += op.count
            if reach > len(current):
                raise TextEditRefused(
                    f"the delta reaches character {reach}; the text has {len(current)}"
                )
    units = TextUnits.measured()
    index = position = 0  # in the text before the edit / in the Y.Text as it is now
    for op in delta:
        if isinstance(op, Insert):
            if op.text:
                text.insert(position, op.text)
                position += units.measure(op.text)
            continue
        width = units.measure(current[index : index + op.count])
        index += op.count
        if isinstance(op, Delete):
            if width:
                del text[position : position + width]
        else:
            position += width


def replace_text(text: Text, content: str) -> bool:
    """Make `text` read `content` with as few edits as practical (and no
    formatting); returns whether anything changed."""
    target: Doc[Text] = Doc()
    wanted = target.get("text", type=Text)
    wanted += content
    return sync_text(text, wanted, TextUnits.measured(), _no_embeds)


def _no_embeds(_text: Text, _position: int, value: Any, _attrs: Attrs) -> None:
    raise AssertionError(f"a plain text target has no embeds, got {value!r}")
