"""A client that never reads is cut off; the others never wait for it."""

from __future__ import annotations

import websockets
from pycrdt import Doc, create_sync_message

from collab.errors import CloseCode
from tests.support.server import run_server
from tests.support.waiting import eventually
from tests.support.yclient import YClient


async def test_client_that_never_reads_is_disconnected_without_stalling_others(settings):
    # No inbound rate limit: the writer floods on purpose (one relayed message per
    # round, since the server merges what arrives in one tick).
    async with run_server(settings.replace(send_queue_messages=64, rate_limit_per_s=0)) as server:
        writer = await YClient(server.ws_url("busy")).connect()
        reader = await YClient(server.ws_url("busy")).connect()
        # max_queue=1: once one frame is buffered the client stops reading the socket,
        # so the server's side backs up exactly like a frozen browser tab's would.
        # No compression (the text would shrink to nothing) and no client pings (it
        # would give up on its own side first).
        stalled = await websockets.connect(
            server.ws_url("busy"), max_queue=1, compression=None, ping_interval=None
        )
        try:
            await stalled.send(create_sync_message(Doc()))
            room = server.runtime.registry.rooms["busy"]
            await eventually(lambda: len(room.peers) == 3)

            chunk, per_round = "x" * 4096, 20
            rounds = 0
            # Write until the stalled peer overflows (socket buffers + 64 messages);
            # the reader keeps up with every round meanwhile.
            while len(room.peers) == 3:
                assert rounds < 500, "the stalled peer was never disconnected"
                for _ in range(per_round):
                    writer.text.insert(0, chunk)  # at 0: yrs never re-copies a growing block
                rounds += 1
                expected = rounds * per_round * len(chunk)
                await eventually(lambda: len(reader.text) == expected)  # noqa: B023
            assert writer.close_code is None and reader.close_code is None
            assert str(reader.text) == str(writer.text)

            # Once it reads again, the stalled client finds the close code.
            code = None
            try:
                while True:
                    await stalled.recv()
            except websockets.ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
            assert code == CloseCode.SLOW_CONSUMER
        finally:
            await stalled.close()
            await writer.close()
            await reader.close()
