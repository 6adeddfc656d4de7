"""collab.client without sockets: cursors as Yjs relative positions, close codes
as exceptions, the backoff."""

from __future__ import annotations

import pytest
from pycrdt import Doc, StickyIndex, Text

from collab.client import (
    BadDocumentName,
    ConnectionLost,
    DocumentDeleted,
    Forbidden,
    HandshakeFailed,
    InvalidMessage,
    Reconnect,
    Refused,
    TooLarge,
    Unauthorized,
)
from collab.client.cursor import relative_position
from collab.client.errors import closed_error
from collab.errors import CloseCode


def test_a_cursor_names_the_character_at_the_index_by_its_utf16_clock():
    doc: Doc = Doc()
    doc.get("content", type=Text).insert(0, "a😀éb")
    me = doc.client_id
    # Yjs clocks count UTF-16 units: a=0, the emoji 1-2, é=3, b=4
    clocks = [relative_position(doc, "content", i)["item"]["clock"] for i in range(4)]
    assert clocks == [0, 1, 3, 4]
    assert relative_position(doc, "content", 2) == {
        "type": None,
        "tname": "content",
        "item": {"client": me, "clock": 3},
        "assoc": 0,
    }


def test_a_cursor_at_the_end_or_in_an_empty_text_has_no_item():
    doc: Doc = Doc()
    assert relative_position(doc, "content", 0)["item"] is None
    doc.get("content", type=Text).insert(0, "abc")
    assert relative_position(doc, "content", 3) == {
        "type": None,
        "tname": "content",
        "item": None,
        "assoc": 0,
    }
    with pytest.raises(IndexError):
        relative_position(doc, "content", 4)


def test_a_cursor_after_a_deletion_resolves_to_the_same_index():
    doc: Doc = Doc()
    text = doc.get("content", type=Text)
    text.insert(0, "hello world")
    del text[2:5]
    position = relative_position(doc, "content", 2)  # before " world"
    assert StickyIndex.from_json(position, text).get_index() == 2  # ASCII: pycrdt reads it
    text.insert(0, ">> ")
    assert StickyIndex.from_json(position, text).get_index() == 5


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (CloseCode.UNAUTHORIZED, Unauthorized),
        (CloseCode.FORBIDDEN, Forbidden),
        (CloseCode.BAD_DOCUMENT_NAME, BadDocumentName),
        (CloseCode.DOCUMENT_DELETED, DocumentDeleted),
        (CloseCode.MESSAGE_TOO_BIG, TooLarge),
        (CloseCode.DOCUMENT_TOO_LARGE, TooLarge),
        (CloseCode.AWARENESS_TOO_LARGE, TooLarge),
        (CloseCode.MALFORMED_MESSAGE, InvalidMessage),
        (CloseCode.UNSUPPORTED_DATA, InvalidMessage),
        (CloseCode.INVALID_UPDATE, InvalidMessage),
        (CloseCode.INVALID_AWARENESS, InvalidMessage),
        (4499, Refused),
    ],
)
def test_every_permanent_close_code_is_a_typed_refusal(code, expected):
    error = closed_error(code, "why")
    assert type(error) is expected and error.is_permanent
    assert error.close_code == code and error.reason == "why"


@pytest.mark.parametrize("code", [1000, 1006, 1011, 1012, 1013, 4001, 4004, 4008, 4029, 4503])
def test_every_other_close_code_is_transient(code):
    error = closed_error(code, "")
    assert type(error) is ConnectionLost and not error.is_permanent


def test_an_http_refusal_is_permanent_unless_a_retry_may_help():
    assert HandshakeFailed(421, "foreign host").is_permanent
    assert not HandshakeFailed(503, "too many sockets").is_permanent
    assert not HandshakeFailed(429, "").is_permanent
    assert not HandshakeFailed(None, "connection refused").is_permanent


def test_the_backoff_doubles_up_to_its_bound():
    policy = Reconnect(initial_delay_s=0.1, max_delay_s=2.5)
    for failures, bound in [(0, 0.1), (1, 0.2), (3, 0.8), (10, 2.5), (1000, 2.5)]:
        delay = policy.delay_s(failures)
        assert bound / 2 <= delay <= bound
