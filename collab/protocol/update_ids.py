"""Which CRDT ids a Yjs update (v1) creates and deletes, read without a Doc.

Attribution needs, for every update, the clock range it creates per client id
and how much it deletes. yrs's `get_state(update)` does not say: it gives the
state a Doc would reach applying the update alone, which is empty for any
update that does not start at clock 0 - that is, for nearly every edit.

So this walks the encoding (lib0 / Yjs `UpdateEncoderV1`): per client, the
number of structs, the client id and the first clock, then each struct -
GC and Skip carry a length; an Item carries its info byte, its origins or
parent, and a content whose clock length is known from its type (a string
counts UTF-16 code units, as Yjs clocks do) - then the delete set. Pure and
bounds-checked: anything that does not decode raises `ValueError`.
"""

from __future__ import annotations

from typing import NamedTuple

_BIT8, _BIT7, _BIT6, _BITS5 = 0x80, 0x40, 0x20, 0x1F
_GC, _SKIP = 0, 10
_XML_ELEMENT, _XML_HOOK = 3, 5
_STRING = 4


# Where a struct hangs: a root's name, None (nested in a type, or unknown), or
# ("origin", client, clock): wherever the item with that id hangs (an item
# written with an origin inherits its parent from it, y-protocols).
Parent = str | None | tuple[str, int, int]


class Struct(NamedTuple):
    """A run of clocks an update creates: where it hangs, and whether it is
    characters of a text (a string content: what "characters" counts).

    A named tuple, as `UpdateIds`: made for every edit (attribution), and a
    frozen dataclass's `__init__` and `__hash__` cost three times a tuple's."""

    client_id: int
    start: int
    end: int
    parent: Parent
    is_string: bool


class UpdateIds(NamedTuple):
    """`created`: client id -> (first clock, end clock) of the structs the update
    holds; `deleted`: clock units its delete set covers; `deleted_ranges`: that
    delete set as (client id, first clock, end clock), end exclusive."""

    created: dict[int, tuple[int, int]]
    deleted: int
    deleted_ranges: tuple[tuple[int, int, int], ...] = ()


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("update truncated")
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varuint(self) -> int:
        # Inlined (locals, no call per byte): this runs for every edit.
        data, pos = self.data, self.pos
        value = shift = 0
        end = min(len(data), pos + 10)
        while pos < end:
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                self.pos = pos
                return value
            shift += 7
        raise ValueError("update truncated" if end == len(data) else "varuint too long")

    def skip_varint(self) -> None:
        while self.byte() & 0x80:
            pass

    def skip(self, count: int) -> None:
        if count < 0 or self.pos + count > len(self.data):
            raise ValueError("update truncated")
        self.pos += count

    def skip_bytes(self) -> None:
        self.skip(self.varuint())

    def string(self) -> str:
        length = self.varuint()
        start = self.pos
        self.skip(length)
        return self.data[start : self.pos].decode("utf-8", "surrogatepass")

    def skip_any(self, depth: int = 0) -> None:
        if depth > 100:
            raise ValueError("value nested too deeply")
        tag = self.byte()
        if tag in (127, 126, 121, 120):  # undefined, null, false, true
            return
        if tag == 125:
            self.skip_varint()
        elif tag == 124:
            self.skip(4)
        elif tag in (123, 122):
            self.skip(8)
        elif tag in (119, 116):  # string, bytes
            self.skip_bytes()
        elif tag == 118:  # object
            for _ in range(self.varuint()):
                self.skip_bytes()
                self.skip_any(depth + 1)
        elif tag == 117:  # array
            for _ in range(self.varuint()):
                self.skip_any(depth + 1)
        else:
            raise ValueError(f"unknown value tag {tag}")


def _utf16_length(text: str) -> int:
    return len(text) + sum(1 for char in text if ord(char) > 0xFFFF)


def _item_parent(reader: _Reader, info: int) -> Parent:
    """Read an Item's origins or parent, after its info byte."""
    parent: Parent = None
    if info & _BIT8:  # left origin
        parent = ("origin", reader.varuint(), reader.varuint())
    if info & _BIT7:  # right origin
        right = ("origin", reader.varuint(), reader.varuint())
        parent = parent or right
    if not info & (_BIT8 | _BIT7):
        if reader.varuint() == 1:  # parent named by its root key
            parent = reader.string()
        else:  # parent named by its id: a nested type
            reader.varuint()
            reader.varuint()
        if info & _BIT6:
            reader.skip_bytes()
    return parent


def _item_length(reader: _Reader, info: int) -> int:
    """Read an Item's content; its clock length."""
    match info & _BITS5:
        case 1:  # deleted
            return reader.varuint()
        case 2:  # JSON
            count = reader.varuint()
            for _ in range(count):
                reader.skip_bytes()
            return count
        case 3 | 5:  # binary, embed
            reader.skip_bytes()
            return 1
        case 4:  # string
            return _utf16_length(reader.string())
        case 6:  # format: key, value
            reader.skip_bytes()
            reader.skip_bytes()
            return 1
        case 7:  # a shared type
            if reader.varuint() in (_XML_ELEMENT, _XML_HOOK):
                reader.skip_bytes()
            return 1
        case 8:  # any
            count = reader.varuint()
            for _ in range(count):
                reader.skip_any()
            return count
        case 9:  # a subdocument: guid, options
            reader.skip_bytes()
            reader.skip_any()
            return 1
    raise ValueError(f"unsupported content type {info & _BITS5}")


def update_ids(update: bytes, structs_out: list[Struct] | None = None) -> UpdateIds:
    """The clock ranges `update` creates per client id, and what it deletes.
    With `structs_out`, also every struct it holds (where it hangs), in order."""
    try:
        return _update_ids(update, structs_out)
    except IndexError:  # the inlined reads below index past the end
        raise ValueError("update truncated") from None


def _update_ids(data: bytes, structs_out: list[Struct] | None) -> UpdateIds:
    # This runs for every edit a room makes (attribution), so the common shapes
    # are read inline: a varuint under 128 is one byte, and an Item holding a
    # string with an origin (what typing makes) is walked here; everything else
    # goes through `_Reader`. Same walk as `_Reader`'s, bounds by IndexError.
    reader: _Reader | None = None  # for the other contents
    created: dict[int, tuple[int, int]] = {}
    clients, pos = _varuint(data, 0)
    for _ in range(clients):
        structs, pos = _varuint(data, pos)
        client_id, pos = _varuint(data, pos)
        start, pos = _varuint(data, pos)
        clock = start
        for _ in range(structs):
            info = data[pos]
            pos += 1
            kind = info & _BITS5
            if kind == _STRING and info & (_BIT8 | _BIT7):
                # Hangs where its origin does (left, else right): ("origin", client, clock).
                origin_client, pos = _varuint(data, pos)
                origin_clock, pos = _varuint(data, pos)
                if info & _BIT8 and info & _BIT7:  # both: the right one is not needed
                    pos = _skip_varuints(data, pos, 2)
                length, pos = _varuint(data, pos)
                end = pos + length
                if end > len(data):
                    raise ValueError("update truncated")
                text = data[pos:end]
                pos = end
                size = (
                    length
                    if text.isascii()
                    else _utf16_length(text.decode("utf-8", "surrogatepass"))
                )
                if structs_out is not None:
                    origin: Parent = ("origin", origin_client, origin_clock)
                    structs_out.append(Struct(client_id, clock, clock + size, origin, True))
                clock += size
            elif kind == _GC or kind == _SKIP:
                length, pos = _varuint(data, pos)
                clock += length
            else:
                reader = reader or _Reader(data)
                reader.pos = pos
                parent = _item_parent(reader, info)
                size = _item_length(reader, info)
                pos = reader.pos
                if structs_out is not None:
                    structs_out.append(
                        Struct(client_id, clock, clock + size, parent, kind == _STRING)
                    )
                clock += size
        if clock > start:
            first, end = created.get(client_id, (start, clock))
            created[client_id] = (min(first, start), max(end, clock))
    deleted = 0
    deleted_ranges: list[tuple[int, int, int]] = []
    clients, pos = _varuint(data, pos)
    for _ in range(clients):
        client_id, pos = _varuint(data, pos)
        ranges, pos = _varuint(data, pos)
        for _ in range(ranges):
            clock, pos = _varuint(data, pos)
            length, pos = _varuint(data, pos)
            deleted += length
            deleted_ranges.append((client_id, clock, clock + length))
    return UpdateIds(created, deleted, tuple(deleted_ranges))


def _varuint(data: bytes, pos: int) -> tuple[int, int]:
    """The varuint at `pos` and the position after it (IndexError past the end)."""
    byte = data[pos]
    if byte < 0x80:
        return byte, pos + 1
    value, shift, end = byte & 0x7F, 7, pos + 10
    pos += 1
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise ValueError("varuint too long")


def _skip_varuints(data: bytes, pos: int, count: int) -> int:
    """The position after `count` varuints from `pos`."""
    for _ in range(count):
        while data[pos] & 0x80:
            pos += 1
        pos += 1
    return pos


def collected_ranges(update: bytes) -> dict[int, list[tuple[int, int]]]:
    """Client id -> the (first clock, end clock) ranges of the GC structs in
    `update`: content collected once its parent type was deleted, which is no
    longer an item of any type (a relative position naming it resolves to nothing)."""
    reader = _Reader(update)
    collected: dict[int, list[tuple[int, int]]] = {}
    for _ in range(reader.varuint()):
        structs = reader.varuint()
        client_id = reader.varuint()
        clock = reader.varuint()
        for _ in range(structs):
            info = reader.byte()
            if info & _BITS5 in (_GC, _SKIP):
                length = reader.varuint()
                if info & _BITS5 == _GC:
                    collected.setdefault(client_id, []).append((clock, clock + length))
                clock += length
            else:
                _item_parent(reader, info)
                clock += _item_length(reader, info)
    return collected
