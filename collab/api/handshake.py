"""The WebSocket handshake request as the server's HTTP parser left it.

uvicorn parses every request's line and headers with httptools before it knows
the request is an upgrade; its own WebSocket protocols are then handed the
request printed back into bytes, which they parse again. collab.api.socket
takes the parsed request instead (`parsed_request`): one parse per handshake.

Only a request that websockets' parser (`websockets.http11.Request.parse`)
would have taken unchanged is taken this way: every line within its line
limit, at most its number of headers, header names and values of the
characters it allows, no request body, an ASCII path. Anything else is
`None`, and the caller feeds `printed_request` to that parser as before, so
such a request is answered (or dropped) exactly as it always was.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from websockets import http11
from websockets.datastructures import Headers
from websockets.http11 import Request

# websockets.http11's own rules for a header name and value (RFC 9110 5.1, 5.5).
_HEADER_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_HEADER_VALUE = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")
# What the request line's target may hold for websockets' parser to split the
# line as httptools did: visible ASCII, no space.
_TARGET = re.compile(rb"[\x21-\x7e]+")
_CRLF = 2


def parsed_request(
    method: str, target: bytes, raw_headers: Sequence[tuple[bytes, bytes]]
) -> Request | None:
    """The request websockets' parser would make of `printed_request(...)`, or
    None if it would refuse it (or if in doubt)."""
    max_line = http11.MAX_LINE_LENGTH
    if len(raw_headers) > http11.MAX_NUM_HEADERS:
        return None
    if len(method) + len(target) + len(" HTTP/1.1") + 1 + _CRLF > max_line or not _TARGET.fullmatch(
        target
    ):
        return None
    headers = Headers()
    for raw_name, raw_value in raw_headers:
        if len(raw_name) + len(raw_value) + len(": ") + _CRLF > max_line:
            return None
        value = raw_value.strip(b" \t")
        if not _HEADER_NAME.fullmatch(raw_name) or not _HEADER_VALUE.fullmatch(value):
            return None
        name = raw_name.decode("ascii")
        if name == "transfer-encoding" or (name == "content-length" and value != b"0"):
            return None  # a request body: websockets' parser refuses it
        headers.set_insecure(name, value.decode("iso-8859-1"))  # validated above
    return Request(target.decode("ascii"), headers, method)


def printed_request(
    method: str, target: bytes, raw_headers: Sequence[tuple[bytes, bytes]]
) -> bytes:
    """The request as uvicorn prints it for its own WebSocket protocols."""
    output = [method.encode(), b" ", target, b" HTTP/1.1\r\n"]
    for name, value in raw_headers:
        output += [name, b": ", value, b"\r\n"]
    output.append(b"\r\n")
    return b"".join(output)
