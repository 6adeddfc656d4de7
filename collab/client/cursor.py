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

Reading another client's cursor back (`text_index`) has the same problem the
other way: `StickyIndex.get_index` adds the UTF-8 bytes of the items before the
character to its UTF-16 offset inside its own item. So the character is first
deleted, in a scratch copy, by a hand-made update (a delete set naming its id):
then yrs counts only the bytes before it, which the text converts to a `str`
index exactly (as Yjs does, a deleted character resolves to where it was). An
id this Doc has not received is not resolved (yrs would panic on it): the
caller asks again once the update arrives; nor is one of collected content
(a deleted nested type's, also a panic). One copy of the Doc per position.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, StickyIndex, Text, write_var_uint

from collab.protocol.codec import decode_state_vector
from collab.protocol.update_ids import collected_ranges

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


def text_index(doc: Doc[Any], root: str, position: Any) -> int | None:
    """The `str` index in the root text `root` that a relative position (the JSON
    above, from another client's awareness) names now; None if it names a
    character of another type or one this Doc has not received."""
    if not isinstance(position, dict) or position.get("tname") != root:
        return None  # a nested type's position has `type` and no `tname`
    assoc = position.get("assoc", 0)
    if not isinstance(assoc, int):
        return None
    text = doc.get(root, type=Text)
    content = str(text)
    item = position.get("item")
    if item is None:  # the end of the text (assoc < 0: its start, as Yjs reads it)
        return len(content) if assoc >= 0 else 0
    if not isinstance(item, dict):
        return None
    client, clock = item.get("client"), item.get("clock")
    if not isinstance(client, int) or not isinstance(clock, int) or client < 0 or clock < 0:
        return None
    if decode_state_vector(doc.get_state()).get(client, 0) <= clock:
        return None
    state = doc.get_update()
    if any(start <= clock < end for start, end in collected_ranges(state).get(client, ())):
        return None  # collected content: yrs would panic on it too
    scratch: Doc[Any] = Doc()
    scratch.apply_update(state)
    scratch.apply_update(_deletion(client, clock))
    scratch_text = scratch.get(root, type=Text)
    rest = str(scratch_text)
    sticky = StickyIndex.from_json(
        {"item": {"client": client, "clock": clock}, "assoc": 0}, scratch_text
    )
    index = len(rest.encode()[: sticky.get_index()].decode(errors="ignore"))
    is_visible = len(rest) < len(content)
    # Yjs: a position associated with the character before it (assoc < 0) names
    # the index after that character.
    return index + 1 if assoc < 0 and is_visible else index


def _deletion(client: int, clock: int) -> bytes:
    """An update (v1) deleting the one item unit `(client, clock)`: no structs,
    a delete set of one client with one range of length 1."""
    return b"\x00" + b"".join(write_var_uint(n) for n in (1, client, 1, clock, 1))


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
