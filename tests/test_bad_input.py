"""Bad input closes only the offending connection, with a specific code; nothing is lost."""

from __future__ import annotations

import pytest
import websockets
from pycrdt import create_awareness_message, write_message

from collab.errors import CloseCode
from tests.helpers import eventually, run_server

BAD_FRAMES = {
    # bytes that look like a sync update but are garbage inside the frame layout
    "random bytes": (b"\x00\x02\x9c\x41\x07\xd3\x55", CloseCode.MALFORMED_MESSAGE),
    "truncated varint": (b"\x00\x02\x80", CloseCode.MALFORMED_MESSAGE),
    "huge length prefix": (b"\x00\x02\xff\xff\xff\xff\x0f", CloseCode.MALFORMED_MESSAGE),
    "invalid yjs update": (
        b"\x00\x02" + write_message(b"\x05\x02garbage"),
        CloseCode.INVALID_UPDATE,
    ),
    "invalid yjs step 2": (b"\x00\x01" + write_message(b"\xff\xff"), CloseCode.INVALID_UPDATE),
    "invalid awareness json": (
        create_awareness_message(b"\x01\x05\x01" + write_message(b'{"user": ')),
        CloseCode.INVALID_AWARENESS,
    ),
    "text frame": ("hello", CloseCode.UNSUPPORTED_DATA),
}


@pytest.mark.parametrize("case", sorted(BAD_FRAMES))
async def test_bad_frame_closes_only_that_connection(connect, server, case):
    frame, expected_code = BAD_FRAMES[case]
    good_a = await connect("doc")
    good_b = await connect("doc")
    good_a.text.insert(0, "before ")
    await eventually(lambda: str(good_b.text) == "before ")
    bad = await connect("doc")
    await bad.send_raw(frame)
    assert await bad.wait_closed() == expected_code
    assert bad.close_reason
    good_b.text.insert(len(good_b.text), "after")
    await eventually(lambda: str(good_a.text) == "before after")
    late = await connect("doc")
    assert str(late.text) == "before after"
    assert len(server.services.registry.rooms["doc"].peers) == 3


async def test_unknown_message_type_is_ignored_and_counted(connect, server):
    a = await connect("doc")
    b = await connect("doc")
    await a.send_raw(b"\x2a\x01\x02\x03")
    a.text.insert(0, "still here")
    await eventually(lambda: str(b.text) == "still here")
    assert server.services.registry.rooms["doc"].unknown_messages == 1
    assert a.close_code is None


async def test_oversized_message_closes_with_4413(settings):
    async with run_server(settings.replace(max_message_bytes=1000)) as server:
        from tests.yclient import YClient

        good = await YClient(server.ws_url("doc")).connect()
        bad = await YClient(server.ws_url("doc")).connect()
        await bad.send_raw(b"\x00\x02" + write_message(b"\x00" * 1500))
        assert await bad.wait_closed() == CloseCode.MESSAGE_TOO_BIG
        good.text.insert(0, "fine")
        await eventually(lambda: good.received_updates == 1)
        await good.close()


@pytest.mark.parametrize("name", ["bad%20name", "x" * 129, "%C3%A9t%C3%A9", "a%2Fb", "semi;colon"])
async def test_bad_document_name_is_refused_with_a_close_code(server, name):
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/ws/{name}") as ws:
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == CloseCode.BAD_DOCUMENT_NAME
    assert "document name" in closed.value.rcvd.reason
    assert server.services.registry.rooms == {}
