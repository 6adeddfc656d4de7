"""A text position as Yjs's relative position, in the JSON y-codemirror.next publishes.

The browser editor reads a remote cursor from the awareness field
`cursor: {anchor, head}`, each a `Y.RelativePosition` serialised by
JSON.stringify: `{"type": null, "tname": ROOT, "item": {"client", "clock"} | null,
"assoc": 0}` (what `Y.createRelativePositionFromTypeIndex(ytext, index)` makes:
the id of the character at `index`, or no item for the end of the text).

pycrdt's `StickyIndex` cannot be used for this: its index counts UTF-8 bytes
while Yjs clocks count UTF-16 units, so past the first non-ASCII character it
names the wrong character (and at the end of a text it panics). Instead, the
character's id is read from what yrs itself computes: an insertion at the
position, made in a scratch copy of the Doc, records the id of its right
neighbour (the "right origin") in the update it produces. Costs one copy of the
Doc per cursor move; meant for programs that move a cursor now and then.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Text

# lib0 info byte of an Item struct (Yjs encoding v1): which origins follow.
_HAS_ORIGIN = 0x80
_HAS_RIGHT_ORIGIN = 0x40


def relative_position(doc: Doc[Any], root: str, index: int) -> dict[str, Any]:
    """The relative position of `index` (a Python `str` index) in the root text `root`."""
    text = str(doc.get(root, type=Text))
    if not 0 <= index <= len(text):
        raise IndexError(f"index {index} outside the text {root!r} of {len(text)} characters")
    scratch: Doc[Any] = Doc()
    scratch.apply_update(doc.get_update())
    updates: list[bytes] = []
    subscription = scratch.observe(lambda event: updates.append(event.update))
    # pycrdt's Text indices are UTF-8 byte offsets.
    scratch.get(root, type=Text).insert(len(text[:index].encode()), "?")
    scratch.unobserve(subscription)
    item = _right_origin(updates[0])
    return {
        "type": None,
        "tname": root,
        "item": None if item is None else {"client": item[0], "clock": item[1]},
        "assoc": 0,
    }


def _right_origin(update: bytes) -> tuple[int, int] | None:
    """The right origin of the one Item in an update made by one insertion (trusted: local)."""
    position = 0

    def varuint() -> int:
        nonlocal position
        value = shift = 0
        while True:
            byte = update[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    for _ in range(4):  # 1 client, 1 struct, its client id and clock
        varuint()
    info = update[position]
    position += 1
    if info & _HAS_ORIGIN:
        varuint(), varuint()
    if not info & _HAS_RIGHT_ORIGIN:
        return None
    return varuint(), varuint()
