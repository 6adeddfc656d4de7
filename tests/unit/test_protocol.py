"""The codec alone: typed messages, one exception tree, and a fuzzed promise."""

from __future__ import annotations

import random
from typing import Annotated

import pytest
from pycrdt import Awareness, Doc, Text, create_awareness_message, write_message
from pydantic import Field, TypeAdapter, ValidationError

from collab.errors import InvalidAwareness, InvalidUpdate, MalformedMessage, ProtocolError
from collab.protocol.codec import (
    KEEPALIVE_MESSAGE,
    AuthMessage,
    AwarenessUpdate,
    QueryAwareness,
    SyncStep1,
    SyncStep2,
    SyncUpdate,
    UnknownMessage,
    decode_message,
    encode_sync_step1,
    encode_sync_step2,
    encode_update,
)
from collab.protocol.names import (
    DOCUMENT_NAME_MAX_CHARS,
    DOCUMENT_NAME_PATTERN,
    is_valid_document_name,
)


def _doc_with_text(text: str) -> Doc:
    doc: Doc = Doc()
    doc.get("text", type=Text).insert(0, text)
    return doc


def test_sync_messages_round_trip_as_typed_messages():
    doc = _doc_with_text("hi")
    assert decode_message(encode_sync_step1(doc.get_state())) == SyncStep1(doc.get_state())
    assert decode_message(encode_sync_step2(doc.get_update())) == SyncStep2(doc.get_update())
    assert decode_message(encode_update(doc.get_update())) == SyncUpdate(doc.get_update())


def test_awareness_message_decodes_entries():
    doc: Doc = Doc()
    awareness = Awareness(doc)
    awareness.set_local_state({"user": {"name": "ada"}})
    payload = awareness.encode_awareness_update([doc.client_id])
    message = decode_message(create_awareness_message(payload))
    assert isinstance(message, AwarenessUpdate)
    assert message.payload == payload
    [entry] = message.entries
    assert (entry.client_id, entry.state) == (doc.client_id, {"user": {"name": "ada"}})


def test_null_awareness_state_means_removal():
    payload = b"\x01" + b"\x07" + b"\x02" + write_message(b"null")
    [entry] = decode_message(create_awareness_message(payload)).entries  # type: ignore[union-attr]
    assert entry.state is None and entry.client_id == 7 and entry.clock == 2


def test_query_awareness_auth_and_unknown_types_decode():
    assert decode_message(b"\x03") == QueryAwareness()
    assert decode_message(b"\x02\x00\x05hello") == AuthMessage(b"\x00\x05hello")
    assert decode_message(b"\x07abc") == UnknownMessage(7)


def test_keepalive_is_an_empty_awareness_update():
    message = decode_message(KEEPALIVE_MESSAGE)
    assert isinstance(message, AwarenessUpdate) and message.entries == ()


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        (b"", MalformedMessage),  # no type at all
        (b"\x80", MalformedMessage),  # truncated varint
        (b"\x00\x80", MalformedMessage),  # truncated sync type
        (b"\x00\x02\xff\xff\xff\x7f", MalformedMessage),  # huge length prefix
        (b"\x00\x02\x05ab", MalformedMessage),  # length past the end
        (b"\x00\x02\x00extra", MalformedMessage),  # trailing bytes
        (b"\x00\x09\x00", MalformedMessage),  # unknown sync type
        (b"\xff" * 12, MalformedMessage),  # varint over 53 bits
        (b"\x00\x00\x03\x05\x01\x01", InvalidUpdate),  # state vector cut short
        (b"\x01\x04\x01\x01\x01\x05", InvalidAwareness),  # awareness entry cut short
        (b"\x01" + write_message(b"\x01\x01\x01" + write_message(b"{nope")), InvalidAwareness),
        (b"\x01" + write_message(b"\x01\x01\x01" + write_message(b"[1, 2]")), InvalidAwareness),
        (b"\x01" + write_message(b"\x01\x01\x01" + write_message(b"\xff\xfe")), InvalidAwareness),
    ],
)
def test_malformed_frames_raise_one_typed_error(frame, error):
    with pytest.raises(error) as raised:
        decode_message(frame)
    assert raised.value.reason


def test_random_frames_only_ever_raise_protocol_errors():
    """The fuzz promise: any bytes -> a message or a ProtocolError, nothing else."""
    rng = random.Random(1234)
    prefixes = [b"", b"\x00", b"\x00\x00", b"\x00\x01", b"\x00\x02", b"\x01", b"\x03"]
    for _ in range(30000):
        frame = rng.choice(prefixes) + rng.randbytes(rng.randrange(0, 40))
        try:
            decode_message(frame)
        except ProtocolError:
            pass


_VALID_NAMES = ["doc", "a", "x" * 128, "team:notes.v2_draft-1", ".a", "a.", "..x", "." * 127 + "x"]
_INVALID_NAMES = ["", "x" * 129, "a b", "a/b", "é", "doc\n", "a%20b", "∂"]
# Dot segments (RFC 3986 5.2.4): browsers and proxies resolve them into other paths.
_DOTS_ONLY = [".", "..", "...", "." * 128]


@pytest.mark.parametrize("name", _VALID_NAMES)
def test_valid_document_names(name):
    assert is_valid_document_name(name)


@pytest.mark.parametrize("name", _INVALID_NAMES)
def test_invalid_document_names(name):
    assert not is_valid_document_name(name)


@pytest.mark.parametrize("name", _DOTS_ONLY)
def test_names_made_only_of_dots_are_refused(name):
    assert not is_valid_document_name(name)


def test_the_rest_path_rule_agrees_with_the_name_rule():
    """REST validates names with a pattern and a length (pydantic has no look-ahead)."""
    path_rule = TypeAdapter(
        Annotated[str, Field(pattern=DOCUMENT_NAME_PATTERN, max_length=DOCUMENT_NAME_MAX_CHARS)]
    )
    for name in _VALID_NAMES + _INVALID_NAMES + _DOTS_ONLY:
        try:
            path_rule.validate_python(name)
            is_accepted = True
        except ValidationError:
            is_accepted = False
        assert is_accepted == is_valid_document_name(name), name


@pytest.mark.parametrize("size", [1, 2, 126, 127, 128, 129, 300, 16383, 16384, 70000])
def test_an_update_decodes_to_its_payload_whatever_its_length_prefix(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    assert decode_message(encode_update(payload)) == SyncUpdate(payload)


@pytest.mark.parametrize("size", [5, 200])
def test_an_update_whose_length_prefix_does_not_match_the_frame_is_refused(size: int) -> None:
    frame = encode_update(b"x" * size)
    for bad in (frame[:-1], frame + b"\x00"):
        with pytest.raises(MalformedMessage):
            decode_message(bad)
