"""collab.api.handshake: a request taken as httptools parsed it is the request
websockets' own parser makes of the same bytes; any request that parser would
refuse is left to it (None)."""

from __future__ import annotations

import pytest
from websockets import http11
from websockets.http11 import Request
from websockets.server import ServerProtocol

from collab.api.handshake import parsed_request, printed_request

KEY = (b"sec-websocket-key", b"dGhlIHNhbXBsZSBub25jZQ==")
UPGRADE = [
    (b"host", b"localhost:8000"),
    (b"upgrade", b"websocket"),
    (b"connection", b"Upgrade"),
    KEY,
    (b"sec-websocket-version", b"13"),
]


def parsed_by_websockets(data: bytes) -> Request | None:
    protocol = ServerProtocol()
    protocol.receive_data(data)
    events = protocol.events_received()
    return events[0] if events and isinstance(events[0], Request) else None


@pytest.mark.parametrize(
    "target, headers",
    [
        (b"/ws/doc", UPGRADE),
        (b"/ws/doc%20x?token=abc&x=1", UPGRADE),
        (
            b"/ws/doc",
            [*UPGRADE, (b"origin", b"https://example.com"), (b"x-forwarded-for", b"1.2.3.4")],
        ),
        (b"/ws/doc", [*UPGRADE, (b"x-latin", b"caf\xe9"), (b"x-spaced", b"  padded \t")]),
        (b"/ws/doc", [*UPGRADE, (b"content-length", b"0")]),
        (b"/ws/doc", [*UPGRADE, (b"x-dup", b"1"), (b"x-dup", b"2")]),
    ],
)
def test_a_plain_request_is_the_request_websockets_parses(
    target: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    ours = parsed_request("GET", target, headers)
    theirs = parsed_by_websockets(printed_request("GET", target, headers))
    assert ours is not None and theirs is not None
    assert (ours.method, ours.path, ours.protocol) == (theirs.method, theirs.path, theirs.protocol)
    assert list(ours.headers.raw_items()) == list(theirs.headers.raw_items())


@pytest.mark.parametrize(
    "target, headers",
    [
        (b"/ws/" + b"a" * http11.MAX_LINE_LENGTH, UPGRADE),  # request line too long
        (b"/ws/doc", [*UPGRADE, (b"x-long", b"v" * http11.MAX_LINE_LENGTH)]),  # header line
        (b"/ws/doc", UPGRADE + [(b"x-%d" % i, b"1") for i in range(http11.MAX_NUM_HEADERS)]),
        (b"/ws/doc", [*UPGRADE, (b"transfer-encoding", b"chunked")]),
        (b"/ws/doc", [*UPGRADE, (b"content-length", b"5")]),
        (b"/ws/doc", [*UPGRADE, (b"bad name", b"1")]),
        (b"/ws/doc", [*UPGRADE, (b"x-ctl", b"a\x01b")]),
        (b"/ws/d\xc3\xa9", UPGRADE),  # not ASCII
        (b"/ws/a b", UPGRADE),  # would split the request line differently
    ],
)
def test_a_request_websockets_would_refuse_is_left_to_its_parser(
    target: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    assert parsed_request("GET", target, headers) is None


def test_the_printed_request_is_uvicorns() -> None:
    assert printed_request("GET", b"/ws/d?x=1", [(b"host", b"h")]) == (
        b"GET /ws/d?x=1 HTTP/1.1\r\nhost: h\r\n\r\n"
    )
