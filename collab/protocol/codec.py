"""Sans-I/O codec for the y-protocols wire format (sync, awareness, auth, query-awareness).

Owns: turning one binary WebSocket frame into one typed message, and typed
payloads back into frames. Never touches a socket, a Doc or asyncio, so it can
be fuzzed on its own (tests/test_protocol.py does).

Invariant: `decode_message` either returns a message or raises a subclass of
`ProtocolError` — never IndexError, UnicodeDecodeError or anything else. pycrdt's
`Decoder` is not hardened (a truncated varint raises IndexError and a length
prefix past the end is silently truncated), so decoding goes through the
bounds-checked `_Reader` below; encoding uses pycrdt's helpers unchanged.

Frame layout (y-protocols, lib0 encoding):
    varuint message_type
    0 sync:        varuint sync_type, varUint8Array payload
                   (step 1: state vector, step 2 and update: Yjs update v1)
    1 awareness:   varUint8Array awareness update
                   (varuint n, then n * (varuint client_id, varuint clock, varString json))
    2 auth:        opaque to this server
    3 query-awareness: no payload
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from pycrdt import create_awareness_message, create_update_message, write_message, write_var_uint

from collab.errors import InvalidAwareness, InvalidUpdate, MalformedMessage

# lib0 encodes varuints in JS numbers, so 53 bits is the most a peer can mean.
_MAX_VARUINT_BITS = 53


_SYNC, _UPDATE = 0, 2  # MessageType.SYNC, SyncType.UPDATE as plain ints


class MessageType(IntEnum):
    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3


class SyncType(IntEnum):
    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


@dataclass(frozen=True, slots=True)
class SyncStep1:
    """The peer's state vector: it asks for everything it is missing."""

    state_vector: bytes


@dataclass(frozen=True, slots=True)
class SyncStep2:
    """The answer to our step 1: everything we were missing, as one update."""

    update: bytes


@dataclass(frozen=True, slots=True)
class SyncUpdate:
    """An incremental update made by the peer."""

    update: bytes


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: dict[str, Any] | None  # None: the client has gone


@dataclass(frozen=True, slots=True)
class AwarenessUpdate:
    """Presence changes. `payload` is the inner update, ready for pycrdt's Awareness."""

    payload: bytes
    entries: tuple[AwarenessEntry, ...]


@dataclass(frozen=True, slots=True)
class AuthMessage:
    payload: bytes


@dataclass(frozen=True, slots=True)
class QueryAwareness:
    pass


@dataclass(frozen=True, slots=True)
class UnknownMessage:
    """A message type this server does not speak; ignored and counted, never fatal."""

    message_type: int


Message = (
    SyncStep1
    | SyncStep2
    | SyncUpdate
    | AwarenessUpdate
    | AuthMessage
    | QueryAwareness
    | UnknownMessage
)


class _Reader:
    """A bounds-checked lib0 reader: every overrun is a `MalformedMessage`."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def read_varuint(self) -> int:
        value = 0
        shift = 0
        data = self._data
        while True:
            if self._pos >= len(data):
                raise MalformedMessage("truncated varint")
            byte = data[self._pos]
            self._pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value
            if shift >= _MAX_VARUINT_BITS:
                raise MalformedMessage("varint longer than 53 bits")

    def read_bytes(self) -> bytes:
        length = self.read_varuint()
        if length > self.remaining:
            raise MalformedMessage(
                f"length prefix {length} exceeds the {self.remaining} bytes left in the frame"
            )
        start = self._pos
        self._pos += length
        return self._data[start : self._pos]

    def read_string(self) -> str:
        try:
            return self.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise MalformedMessage(f"string is not UTF-8: {exc.reason}") from exc

    def read_rest(self) -> bytes:
        rest = self._data[self._pos :]
        self._pos = len(self._data)
        return rest

    def expect_end(self, what: str) -> None:
        if self.remaining:
            raise MalformedMessage(f"{self.remaining} trailing bytes after {what}")


def decode_message(frame: bytes) -> Message:
    """Decode one binary frame into one typed message, or raise a `ProtocolError`."""
    if len(frame) > 3 and frame[0] == _SYNC and frame[1] == _UPDATE:
        # The message of every edit, read without a reader when its length
        # prefix (one or two bytes) matches the frame exactly; anything else
        # takes the general path below, which says what is wrong.
        first = frame[2]
        if first < 0x80:
            if first == len(frame) - 3:
                return SyncUpdate(frame[3:])
        elif frame[3] < 0x80 and (first & 0x7F) | (frame[3] << 7) == len(frame) - 4:
            return SyncUpdate(frame[4:])
    reader = _Reader(frame)
    message_type = reader.read_varuint()
    if message_type == MessageType.SYNC:
        return _decode_sync(reader)
    if message_type == MessageType.AWARENESS:
        payload = reader.read_bytes()
        reader.expect_end("awareness message")
        return AwarenessUpdate(payload, decode_awareness_update(payload))
    if message_type == MessageType.AUTH:
        return AuthMessage(reader.read_rest())
    if message_type == MessageType.QUERY_AWARENESS:
        return QueryAwareness()
    return UnknownMessage(message_type)


def peek_message_kind(head: bytes) -> tuple[int, int | None] | None:
    """The message type and, for a sync message, its sync type, from a message's
    first bytes; None while `head` is too short to tell. Decodes nothing else:
    the edge bounds a message by its kind before it has the rest."""
    reader = _Reader(head)
    try:
        message_type = reader.read_varuint()
        if message_type != MessageType.SYNC:
            return (message_type, None)
        return (message_type, reader.read_varuint())
    except MalformedMessage:
        return None


def _decode_sync(reader: _Reader) -> SyncStep1 | SyncStep2 | SyncUpdate:
    sync_type = reader.read_varuint()
    payload = reader.read_bytes()
    reader.expect_end("sync message")
    if sync_type == SyncType.STEP1:
        decode_state_vector(payload)  # validates: a bad one is InvalidUpdate
        return SyncStep1(payload)
    if sync_type == SyncType.STEP2:
        return SyncStep2(payload)
    if sync_type == SyncType.UPDATE:
        return SyncUpdate(payload)
    raise MalformedMessage(f"unknown sync message type {sync_type}")


def decode_state_vector(state_vector: bytes) -> dict[int, int]:
    """A state vector is varuint n, then n pairs of varuint (client id, clock)."""
    reader = _Reader(state_vector)
    clocks: dict[int, int] = {}
    try:
        for _ in range(reader.read_varuint()):
            client_id = reader.read_varuint()
            clocks[client_id] = reader.read_varuint()
        reader.expect_end("state vector")
    except MalformedMessage as exc:
        raise InvalidUpdate(f"invalid state vector: {exc.reason}") from exc
    return clocks


def encode_state_vector(clocks: dict[int, int]) -> bytes:
    return write_var_uint(len(clocks)) + b"".join(
        write_var_uint(client_id) + write_var_uint(clock)
        for client_id, clock in sorted(clocks.items())
    )


def encode_id_ranges(ranges: Iterable[tuple[int, int, int]]) -> bytes:
    """(client id, start, end) ranges, compactly: like a Yjs delete set (varuint
    clients; per client its id, its range count, then per range the gap from
    the previous range's end and the length), ranges sorted and joined per
    client. Attribution stores what a session deleted this way."""
    by_client: dict[int, list[tuple[int, int]]] = {}
    for client_id, start, end in sorted(ranges):
        if end <= start:
            continue
        spans = by_client.setdefault(client_id, [])
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    out = bytearray(write_var_uint(len(by_client)))
    for client_id, spans in by_client.items():
        out += write_var_uint(client_id) + write_var_uint(len(spans))
        previous = 0
        for start, end in spans:
            out += write_var_uint(start - previous) + write_var_uint(end - start)
            previous = end
    return bytes(out)


def decode_id_ranges(data: bytes) -> tuple[tuple[int, int, int], ...]:
    """The ranges `encode_id_ranges` wrote. Raises `InvalidUpdate` if `data` is not that."""
    reader = _Reader(data)
    ranges: list[tuple[int, int, int]] = []
    try:
        for _ in range(reader.read_varuint()):
            client_id = reader.read_varuint()
            previous = 0
            for _ in range(reader.read_varuint()):
                start = previous + reader.read_varuint()
                previous = start + reader.read_varuint()
                ranges.append((client_id, start, previous))
        reader.expect_end("id ranges")
    except MalformedMessage as exc:
        raise InvalidUpdate(f"invalid id ranges: {exc.reason}") from exc
    return tuple(ranges)


def decode_awareness_update(payload: bytes) -> tuple[AwarenessEntry, ...]:
    """Parse an awareness update; states must be JSON objects or null (a removal)."""
    reader = _Reader(payload)
    entries = []
    try:
        for _ in range(reader.read_varuint()):
            client_id = reader.read_varuint()
            clock = reader.read_varuint()
            text = reader.read_string()
            entries.append(AwarenessEntry(client_id, clock, _parse_state(text)))
        reader.expect_end("awareness update")
    except MalformedMessage as exc:
        raise InvalidAwareness(f"invalid awareness update: {exc.reason}") from exc
    return tuple(entries)


def _parse_state(text: str) -> dict[str, Any] | None:
    try:
        state = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidAwareness("awareness state is not valid JSON") from exc
    if state is not None and not isinstance(state, dict):
        raise InvalidAwareness("awareness state must be a JSON object or null")
    return state


def _refuse_constant(name: str) -> Any:
    # Python's json reads NaN and Infinity, which are not JSON: relayed, they
    # would make every JavaScript client's JSON.parse throw on the message.
    raise InvalidAwareness(f"awareness state holds {name}, which is not JSON")


def encode_sync_step1(state_vector: bytes) -> bytes:
    return bytes((MessageType.SYNC, SyncType.STEP1)) + write_message(state_vector)


def encode_sync_step2(update: bytes) -> bytes:
    return bytes((MessageType.SYNC, SyncType.STEP2)) + write_message(update)


def encode_update(update: bytes) -> bytes:
    return create_update_message(update)


def encode_awareness(payload: bytes) -> bytes:
    return create_awareness_message(payload)


# y-protocols/auth.js: the one auth message, sent by servers; y-websocket logs its
# reason ("Permission denied to access ...").
_PERMISSION_DENIED = 0


def encode_permission_denied(reason: str) -> bytes:
    return bytes((MessageType.AUTH, _PERMISSION_DENIED)) + write_message(reason.encode())


# An awareness update with zero entries: every Yjs client accepts it as a no-op,
# and it counts as traffic for y-websocket's 30 s liveness check.
KEEPALIVE_MESSAGE = encode_awareness(b"\x00")
