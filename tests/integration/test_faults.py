"""Faults: kill -9 at random moments, a locked database, damaged rows, deleted
documents coming back, duplicated history after a restart, SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3

import httpx
from pycrdt import Doc, Map, Text

from collab.errors import CloseCode
from collab.storage.sql_store import SqlStore
from collab.storage.store import AppendUpdate, SaveSnapshot, SnapshotKind
from tests.support.server import run_server, server_process
from tests.support.waiting import TIMEOUT_S, eventually
from tests.support.yclient import YClient, read_text

ROUNDS = 8


async def _write_continuously(client: YClient, tag: str, stop: asyncio.Event) -> None:
    i = 0
    while not stop.is_set() and client.close_code is None:
        client.text.insert(len(client.text), f"<{tag}.{i}>")
        i += 1
        await asyncio.sleep(random.uniform(0, 0.004))


async def test_kill_9_at_random_moments_under_load_loses_nothing_seen(tmp_path):
    """Every round: two authors write, a witness watches, the server is killed at a
    random moment; after the restart, everything the witness saw must be there."""
    rng = random.Random(20261126)
    seen_total = 0
    async with server_process(tmp_path) as server:
        for round_no in range(ROUNDS):
            authors = [await YClient(server.ws_url("doc")).connect() for _ in range(2)]
            witness = await YClient(server.ws_url("doc")).connect()
            stop = asyncio.Event()
            writers = [
                asyncio.create_task(_write_continuously(a, f"{round_no}{'ab'[n]}", stop))
                for n, a in enumerate(authors)
            ]
            await asyncio.sleep(rng.uniform(0.05, 0.8))
            server.process.kill()  # type: ignore[union-attr]
            await server.process.wait()  # type: ignore[union-attr]
            stop.set()
            await asyncio.gather(*writers)
            for client in [*authors, witness]:
                await client.wait_closed()
            seen = str(witness.text)
            seen_tokens = [t + ">" for t in seen.split(">") if t]
            await server.start()
            recovered = await read_text(server.ws_url("doc"))
            missing = [t for t in seen_tokens if t not in recovered]
            assert not missing, f"round {round_no}: lost {len(missing)} seen updates"
            assert all(recovered.count(t) == 1 for t in seen_tokens), "duplicated content"
            seen_total += len(seen_tokens)
    assert seen_total > ROUNDS * 10, f"the load was too light to prove anything: {seen_total}"
    print(f"kill -9 x{ROUNDS}: {seen_total} updates seen by the witness, none lost")


async def test_locked_database_refuses_edits_with_4503_and_recovers(settings, tmp_path):
    async with run_server(settings) as server:
        a = await YClient(server.ws_url("doc")).connect()
        b = await YClient(server.ws_url("doc")).connect()
        a.text.insert(0, "before")
        await eventually(lambda: str(b.text) == "before")
        # Taken in a thread: the server runs on this event loop, and may be in the
        # middle of a transaction (the events task, attribution) the loop must finish.
        lock = sqlite3.connect(
            tmp_path / "collab.db", isolation_level=None, timeout=TIMEOUT_S, check_same_thread=False
        )
        await asyncio.to_thread(lock.execute, "BEGIN EXCLUSIVE")
        try:
            a.text.insert(len(a.text), " during")
            # The write cannot commit: the room's clients are told, nothing is relayed.
            assert await a.wait_closed(TIMEOUT_S * 2) == CloseCode.STORAGE_UNAVAILABLE
            assert await b.wait_closed() == CloseCode.STORAGE_UNAVAILABLE
            assert str(b.text) == "before"
            assert server.runtime.writer.is_failing
            # A client that comes and edits during the outage is refused too.
            late = await YClient(server.ws_url("doc")).connect(wait_synced=False)
            late.text.insert(0, "late ")
            assert await late.wait_closed() == CloseCode.STORAGE_UNAVAILABLE
        finally:
            lock.execute("ROLLBACK")
            lock.close()
        await eventually(lambda: not server.runtime.writer.is_failing, timeout_s=TIMEOUT_S * 2)
        after = await YClient(server.ws_url("doc")).connect()
        # Nothing that was merged during the outage was lost.
        assert "before during" in str(after.text) and "late " in str(after.text)
        async with httpx.AsyncClient() as http:
            body = (await http.get(f"{server.http_url}/metrics")).text
        assert "collab_storage_failing 0.0" in body
        assert 'collab_connections_closed_total{code="4503"} 3.0' in body
        await after.close()


def _independent_update(key: str, value: str) -> bytes:
    doc: Doc = Doc()
    doc.get("map", type=Map)[key] = value
    return doc.get_update()


async def test_corrupt_rows_are_quarantined_and_the_rest_loads(settings):
    store = SqlStore(settings.database_url)
    await store.open()
    first = Doc()
    first.get("text", type=Text).insert(0, "version one")
    # An edit creates the document; the first version leaves that row in the log.
    await store.commit([AppendUpdate("doc", _independent_update("lost", "compacted"))])
    await store.commit(
        [SaveSnapshot("doc", first.get_update(), kind=SnapshotKind.NAMED, row_ids=())]
    )
    newest = Doc()
    newest.apply_update(first.get_update())
    newest.get("text", type=Text).insert(11, " and two")
    await store.commit([SaveSnapshot("doc", newest.get_update())])
    await store.commit([AppendUpdate("doc", _independent_update(k, k)) for k in "abc"])
    await store.close()
    with sqlite3.connect(settings.database_url.split("///", 1)[1]) as db:
        # Damage the newest snapshot and one log row: truncated, as a torn write would.
        db.execute("UPDATE snapshots SET state = substr(state, 1, 7) WHERE id = 2")
        db.execute(
            "UPDATE updates SET data = substr(data, 1, 5) WHERE id = "
            "(SELECT id FROM updates WHERE document = 'doc' ORDER BY id DESC LIMIT 1 OFFSET 1)"
        )
    async with run_server(settings) as server:
        client = await YClient(server.ws_url("doc")).connect()
        # The older snapshot and the valid log rows load; the damaged rows do not.
        assert str(client.text) == "version one"
        assert client.map().to_py() == {"a": "a", "c": "c"}
        quarantined = await server.runtime.store.quarantined("doc")
        assert sorted((source, row_id) for source, row_id, _ in quarantined) == [
            ("snapshots", 2),
            ("updates", 3),
        ]
        async with httpx.AsyncClient() as http:
            body = (await http.get(f"{server.http_url}/metrics")).text
        assert "collab_quarantined_rows_total 2.0" in body
        # The document goes on normally from what was valid.
        client.map()["d"] = "d"
        await eventually(lambda: client.received_updates == 1)
        await client.close()


async def test_a_deleted_document_does_not_come_back_from_an_old_client(settings):
    async with run_server(settings) as server:
        old = await YClient(server.ws_url("doc")).connect()
        old.text.insert(0, "secret")
        await eventually(lambda: old.received_updates == 1)
        async with httpx.AsyncClient() as http:
            assert (await http.delete(f"{server.http_url}/api/documents/doc")).status_code == 204
        assert await old.wait_closed() == CloseCode.DOCUMENT_DELETED
        # The client still holds the old history and reconnects (as pre-v3 clients do).
        returning = YClient(server.ws_url("doc"), doc=old.doc)
        await returning.connect(wait_synced=False)
        assert await returning.wait_closed() == CloseCode.DOCUMENT_DELETED
        assert "history of the deleted document" in (returning.close_reason or "")
        fresh = await YClient(server.ws_url("doc")).connect()
        assert str(fresh.text) == ""
        # The name can be used again for a new document with new history.
        fresh.text.insert(0, "new start")
        await eventually(lambda: fresh.received_updates == 1)
        await fresh.close()
    # The tombstone is stored: it holds after a restart, and a second deletion.
    async with run_server(settings) as server:
        again = YClient(server.ws_url("doc"), doc=old.doc)
        await again.connect(wait_synced=False)
        assert await again.wait_closed() == CloseCode.DOCUMENT_DELETED
        check = await YClient(server.ws_url("doc")).connect()
        assert str(check.text) == "new start"
        await check.close()


async def test_restart_never_duplicates_content_for_reconnecting_clients(tmp_path):
    async with server_process(tmp_path) as server:
        client = await YClient(server.ws_url("doc")).connect()
        client.text.insert(0, "hello")
        client.map()["k"] = "v"
        await eventually(client.is_saved)
        for stop in (signal.SIGKILL, signal.SIGTERM):
            await server.stop(stop)
            await client.wait_closed()
            await server.start()
            # The same client (same Doc, same history) reconnects: nothing doubles.
            client = await YClient(server.ws_url("doc"), doc=client.doc).connect()
            assert str(client.text) == "hello"
            assert await read_text(server.ws_url("doc")) == "hello"
        await client.close()


async def test_sigterm_closes_clients_with_1012_after_saving(tmp_path):
    async with server_process(tmp_path) as server:
        clients = [await YClient(server.ws_url(f"doc{i % 2}")).connect() for i in range(4)]
        for i, client in enumerate(clients):
            client.text.insert(0, f"edit {i};")
        await eventually(lambda: all(c.is_saved() for c in clients))
        exit_code = await server.stop(signal.SIGTERM)
        assert exit_code in (0, -signal.SIGTERM)
        for client in clients:
            assert await client.wait_closed() == CloseCode.SERVICE_RESTART
        with contextlib.suppress(httpx.TransportError):
            async with httpx.AsyncClient() as http:
                await http.get(f"http://127.0.0.1:{server.port}/healthz")
                raise AssertionError("the server still accepts requests")
        await server.start()
        assert sorted((await read_text(server.ws_url("doc0"))).split(";")[:-1]) == [
            "edit 0",
            "edit 2",
        ]
