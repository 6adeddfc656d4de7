"""Regressions found in review: each test names the failure it guards against."""

from __future__ import annotations

import asyncio
import sys

import httpx
from pycrdt import Doc, Text, create_sync_message, create_update_message

from collab.errors import CloseCode
from collab.metrics import Metrics
from collab.rooms.peer import Peer, PeerLimits
from collab.rooms.registry import build_doc
from tests.support.server import REPO, server_process
from tests.support.waiting import TIMEOUT_S, eventually

# An update yrs rejects with RuntimeError (not ValueError) on top of BASE.
BASE = bytes.fromhex(
    "010ece9787ebf9ddcb0a0004010474657874016184ce9787ebf9ddcb0a0001622101016d0130010801016101"
    "7c0000000044ce9787ebf9ddcb0a000161c4ce9787ebf9ddcb0a04ce9787ebf9ddcb0a0001622801016d0131"
    "0175027c3f8000007c4000000088ce9787ebf9ddcb0a03017c3f800000c4ce9787ebf9ddcb0a00ce9787ebf9"
    "ddcb0a0105f09f9a80782801016d0132017c3f80000088ce9787ebf9ddcb0a07017c40000000c4ce9787ebf9"
    "ddcb0a04ce9787ebf9ddcb0a05026162a8ce9787ebf9ddcb0a02017c3f80000088ce9787ebf9ddcb0a0c017c"
    "4040000001ce9787ebf9ddcb0a010201"
)
BAD = bytes.fromhex(
    "0103ce9787ebf9dd160a0444ce9787ebf9ddcb0a000261622801016d01310175027c3f8000007c2300000088"
    "ce9787ebf9ddcb0a03017c3f80000000"
)


class SilentTransport:
    async def send_bytes(self, data: bytes) -> None:
        pass

    async def close(self, code: int, reason: str) -> None:
        pass


async def test_update_that_yrs_rejects_with_runtime_error_closes_with_4422(connect):
    client = await connect("doc")
    await client.send_raw(create_update_message(BASE))
    await eventually(lambda: client.received_updates == 1)
    await client.send_raw(create_update_message(BAD))
    assert await client.wait_closed() == CloseCode.INVALID_UPDATE


async def test_a_join_racing_a_delete_never_brings_the_data_back(connect, server):
    writer = await connect("secret")
    writer.text.insert(0, "secret")
    await eventually(lambda: writer.received_updates == 1)
    await writer.close()
    registry = server.runtime.registry
    await eventually(lambda: "secret" not in registry.rooms)
    peer = Peer(SilentTransport(), "secret", PeerLimits(), Metrics())
    deleted, room = await asyncio.gather(registry.delete("secret"), registry.join("secret", peer))
    assert deleted is True
    assert str(room.doc.get("text", type=Text)) == ""
    room.doc.get("text", type=Text).insert(0, "new")
    await registry.compactor.snapshot(room)
    stored = build_doc(await server.runtime.store.load("secret"), "secret")
    assert str(stored.get("text", type=Text)) == "new"
    registry.leave(room, peer)


async def test_step1_flood_while_writes_are_pending_parks_one_reply(connect, server, monkeypatch):
    store = server.runtime.store
    real_commit = store.commit
    gate = asyncio.Event()

    async def slow_commit(ops):
        await gate.wait()
        return await real_commit(ops)

    client = await connect("doc")
    monkeypatch.setattr(store, "commit", slow_commit)
    client.text.insert(0, "pending")
    writer = server.runtime.writer
    await eventually(lambda: writer.pending_for("doc") == 1)
    before = writer.pending_ops
    for _ in range(200):
        await client.send_raw(create_sync_message(Doc()))
    await eventually(lambda: server.runtime.registry.rooms["doc"].peers)
    peer = next(iter(server.runtime.registry.rooms["doc"].peers.values()))
    await eventually(lambda: peer.has_deferred_reply)
    await asyncio.sleep(0.1)  # let the rest of the flood arrive: it must not add barriers
    assert writer.pending_ops <= before + 1
    gate.set()
    await eventually(lambda: not peer.has_deferred_reply and client.received_updates == 1)


async def test_nul_characters_do_not_block_the_writer(connect, server):
    a = await connect("with-nul")
    a.text.insert(0, "a\x00b")
    await eventually(lambda: a.received_updates == 1)
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        saved = await http.post(
            "/api/documents/with-nul/snapshots", json={"label": "x\x00y", "author": "\x00"}
        )
    assert saved.status_code == 201
    b = await connect("other")
    b.text.insert(0, "still saving")
    await eventually(lambda: b.received_updates == 1)


async def test_a_second_server_on_the_same_database_refuses_to_start(tmp_path):
    async with server_process(tmp_path) as first:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "collab",
            "serve",
            "--port",
            "0",
            "--database",
            first.database_url,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(process.communicate(), TIMEOUT_S * 3)
        assert process.returncode != 0
        assert b"another collab server" in out
