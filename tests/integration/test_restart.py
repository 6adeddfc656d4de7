"""Durability across restarts of a real server process: SIGTERM and kill -9."""

from __future__ import annotations

import signal

from collab.storage.sql_store import SqlStore
from tests.support.server import server_process
from tests.support.waiting import eventually
from tests.support.yclient import YClient, read_text


async def test_sigterm_keeps_every_edit_and_compacts(tmp_path):
    pieces = [f"[{i}]" for i in range(200)]
    async with server_process(tmp_path) as server:
        client = await YClient(server.ws_url("doc")).connect()
        for piece in pieces:
            client.text.insert(len(client.text), piece)
        await eventually(client.is_saved)
        # uvicorn shuts down gracefully, then re-raises the signal it caught
        assert await server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        await client.wait_closed()
        log = server.log_path.read_text()
        assert "collab stopped" in log, log
        await server.start()
        assert await read_text(server.ws_url("doc")) == "".join(pieces)
    assert "Traceback" not in log, log
    store = SqlStore(server.database_url)
    await store.open()
    info = await store.document_info("doc")
    await store.close()
    assert info is not None and info.snapshots >= 1, "graceful shutdown writes a snapshot"


async def test_kill_9_loses_nothing_another_client_has_seen(tmp_path):
    count = 500
    async with server_process(tmp_path) as server:
        author = await YClient(server.ws_url("doc")).connect()
        witness = await YClient(server.ws_url("doc")).connect()
        for i in range(count):
            author.text.insert(len(author.text), f"<{i}>")
        # The moment the witness has the last update, the server dies.
        await eventually(lambda: f"<{count - 1}>" in str(witness.text), what="witness saw all")
        server.process.kill()  # type: ignore[union-attr]
        await server.process.wait()  # type: ignore[union-attr]
        seen = str(witness.text)
        await author.wait_closed()
        await witness.wait_closed()
        await server.start()
        recovered = await read_text(server.ws_url("doc"))
    assert all(f"<{i}>" in seen for i in range(count))
    assert recovered == seen
