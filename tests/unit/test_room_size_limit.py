"""The document size limit near the limit: an exact size is a full encode of the
Doc, taken once per margin of growth rather than for every update; a refusal is
always exact; a document never passes the limit by the margin."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from pycrdt import Doc, Text

from collab.errors import DocumentTooLarge
from collab.rooms.room import Room
from collab.rooms.room_limits import RoomLimits
from tests.support.fakes import RecordingSink

LIMIT = 64 * 1024


class Editor:
    """A client's replica: each edit returns the update it made."""

    def __init__(self) -> None:
        self.doc: Doc[Any] = Doc()
        self.text = self.doc.get("text", type=Text)
        self._made: list[bytes] = []
        self.doc.observe(lambda event: self._made.append(event.update))

    @classmethod
    def of(cls, room: Room) -> Editor:
        """A replica of what the room holds."""
        editor = cls()
        editor.doc.apply_update(Doc.get_update(room.doc))
        return editor

    def edit(self, change: Callable[[Text], None]) -> bytes:
        self._made.clear()
        change(self.text)
        [update] = self._made
        return update

    def append(self, text: str) -> bytes:
        return self.edit(lambda t: t.insert(len(t), text))

    def type_and_erase(self, text: str) -> Iterator[bytes]:
        """A word typed at the start and erased again: the document stays the
        same size, but every update adds to the estimate."""
        yield self.edit(lambda t: t.insert(0, text))
        yield self.edit(lambda t: t.__delitem__(slice(0, len(text))))


def _room_counting_encodes(limit: int = LIMIT) -> tuple[Room, list[int]]:
    """A room whose full encodes (`get_update()` with no state vector) are counted."""
    doc: Doc[Any] = Doc()
    encode = doc.get_update
    encodes = [0]

    def counting(state: bytes | None = None) -> bytes:
        if state is None:
            encodes[0] += 1
            return encode()
        return encode(state)

    doc.get_update = counting  # type: ignore[method-assign]
    return Room("doc", doc, RecordingSink(), limits=RoomLimits(max_document_bytes=limit)), encodes


def _full_encode_size(room: Room) -> int:
    return len(Doc.get_update(room.doc))


async def test_updates_near_the_limit_cost_far_fewer_full_encodes_than_updates():
    room, encodes = _room_counting_encodes()
    editor = _filled_to_just_below_the_limit(room)
    encodes[0] = 0
    updates = [u for i in range(200) for u in editor.type_and_erase(f"w{i} ")]
    for update in updates:
        assert room.apply_update(update)
    # Each update added to the estimate, which is past the limit since the first
    # two; the document itself did not grow, and every update was accepted.
    assert LIMIT - 70 <= _full_encode_size(room) < LIMIT
    assert 1 <= encodes[0] <= len(updates) // 10, f"{encodes[0]} encodes for {len(updates)}"


async def test_a_document_never_passes_the_limit_by_the_margin():
    room, _ = _room_counting_encodes()
    editor = Editor()
    margin = RoomLimits(max_document_bytes=LIMIT).size_margin_bytes
    with pytest.raises(DocumentTooLarge, match="would exceed"):
        for _ in range(LIMIT // 100 * 2):
            room.apply_update(editor.append("y" * 100))
    assert _full_encode_size(room) <= LIMIT + margin


async def test_a_refusal_is_exact_room_freed_by_a_deletion_is_usable_again():
    room, _ = _room_counting_encodes()
    editor = _filled_to_just_below_the_limit(room)
    with pytest.raises(DocumentTooLarge):
        room.apply_update(editor.append("y" * 1_000))
    # The estimate only ever grew; the deletion frees room all the same.
    editor = Editor.of(room)
    room.apply_update(editor.edit(lambda t: t.__delitem__(slice(0, LIMIT // 2))))
    assert room.apply_update(editor.append("z" * 1_000))
    assert str(room.doc.get("text", type=Text)).endswith("z" * 1_000)


def _filled_to_just_below_the_limit(room: Room) -> Editor:
    """Text appended until the document is 70 bytes below the limit: a word
    typed still fits, a word typed and erased would not, by the estimate."""
    editor = Editor()
    while (missing := LIMIT - 70 - _full_encode_size(room)) > 0:
        room.apply_update(editor.append("x" * max(1, missing // 2)))
    return editor
