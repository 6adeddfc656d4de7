"""Bad input closes only the offending connection, with a specific code; nothing is lost."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
import websockets
from pycrdt import Doc, Text, create_awareness_message, write_message, write_var_uint

from collab.errors import CloseCode
from collab.protocol.codec import encode_update
from tests.support.server import RunningServer, metric_value, run_server
from tests.support.waiting import TIMEOUT_S, eventually


def _valid_update() -> bytes:
    doc: Doc = Doc()
    doc.get("text", type=Text).insert(0, "valid")
    return doc.get_update()


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
    "empty frame": (b"", CloseCode.MALFORMED_MESSAGE),
    "length prefix claiming 2 GiB": (
        b"\x00\x02" + write_var_uint(2**31) + b"tiny",
        CloseCode.MALFORMED_MESSAGE,
    ),
    "varint past 53 bits": (b"\x00\x02" + b"\xff" * 9 + b"\x01", CloseCode.MALFORMED_MESSAGE),
    "truncated awareness varint": (b"\x01\x85", CloseCode.MALFORMED_MESSAGE),
    "unknown sync type": (b"\x00\x07\x00", CloseCode.MALFORMED_MESSAGE),
    "trailing bytes after an update": (
        encode_update(_valid_update()) + b"\x00",
        CloseCode.MALFORMED_MESSAGE,
    ),
    "invalid state vector in step 1": (
        b"\x00\x00" + write_message(b"\x05\x01"),
        CloseCode.INVALID_UPDATE,
    ),
    "awareness state that is not an object": (
        create_awareness_message(b"\x01\x05\x01" + write_message(b"[1, 2]")),
        CloseCode.INVALID_AWARENESS,
    ),
    "awareness entry count beyond the frame": (
        create_awareness_message(b"\x7f\x05\x01" + write_message(b"{}")),
        CloseCode.INVALID_AWARENESS,
    ),
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
    assert len(server.runtime.registry.rooms["doc"].peers) == 3


async def test_unknown_message_type_is_ignored_and_counted(connect, server):
    a = await connect("doc")
    b = await connect("doc")
    await a.send_raw(b"\x2a\x01\x02\x03")
    a.text.insert(0, "still here")
    await eventually(lambda: str(b.text) == "still here")
    assert _ignored_unknown(server) == 1
    assert a.close_code is None


async def test_oversized_message_closes_with_4413(settings):
    async with run_server(settings.replace(max_message_bytes=1000)) as server:
        from tests.support.yclient import YClient

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
    assert server.runtime.registry.rooms == {}


async def test_a_thousand_connections_at_once(settings):
    """1,000 clients open at the same moment: up to the per-document limit sync,
    the rest are told to retry later (1013); the room keeps converging."""
    async with run_server(settings.replace(max_connections_per_document=600)) as server:
        from tests.support.yclient import YClient

        good_a = await YClient(server.ws_url("crowd")).connect()
        good_b = await YClient(server.ws_url("crowd")).connect()
        good_a.text.insert(0, "crowded")

        release = asyncio.Event()
        outcomes: list[int | None] = []

        async def one() -> None:
            """Record None once synced (then hold the slot), or the close code."""
            try:
                async with websockets.connect(
                    server.ws_url("crowd"), open_timeout=TIMEOUT_S * 6
                ) as ws:
                    await ws.send(b"\x00\x00\x01\x00")  # step 1: empty state vector
                    while (await asyncio.wait_for(ws.recv(), TIMEOUT_S * 3))[:2] != b"\x00\x01":
                        pass
                    outcomes.append(None)
                    await release.wait()
            except websockets.ConnectionClosed as closed:
                outcomes.append(closed.rcvd.code if closed.rcvd else -1)

        tasks = [asyncio.create_task(one()) for _ in range(1000)]
        await eventually(lambda: len(outcomes) == 1000, timeout_s=TIMEOUT_S * 6)
        # Two healthy clients hold two of the 600 slots; everyone else got a clear answer.
        assert outcomes.count(None) == 598
        assert outcomes.count(CloseCode.TRY_AGAIN_LATER) == 402
        release.set()
        await asyncio.gather(*tasks)
        good_b.text.insert(len(good_b.text), "!")
        await eventually(lambda: str(good_a.text) == "crowded!" == str(good_b.text))
        with contextlib.suppress(Exception):
            await good_a.close()
            await good_b.close()


def _ignored_unknown(server: RunningServer) -> float:
    return metric_value(
        server.runtime.metrics, "collab_messages_ignored_total", reason="unknown_type"
    )
