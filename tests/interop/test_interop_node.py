"""The real Yjs client (npm `yjs` + `y-websocket` on Node) against the server.

Each Node client is tests/interop/client.mjs in its own process, connecting with
`new WebsocketProvider(url, doc, ydoc, {WebSocketPolyfill: WebSocket})` exactly
as an application does; the pycrdt clients come from the `connect` fixture. The
Node script prints one JSON line once its expectations hold (or exits non-zero
on its own timeout); with --hold-stdin it stays connected until we close its stdin.

Needs Node.js 20+ and `npm ci` in tests/interop (`make install` does both).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.support.nodeclient import require_node
from tests.support.server import RunningServer, metric_value
from tests.support.waiting import eventually
from tests.support.yclient import YClient

pytestmark = pytest.mark.node


@pytest.fixture(scope="module", autouse=True)
def _node_is_installed() -> None:
    require_node()


def user(name: str) -> dict[str, Any]:
    """The awareness state client.mjs --presence NAME sets."""
    return {"user": {"name": name}}


def presences(result: dict[str, Any]) -> list[Any]:
    """The others' awareness states a Node client reported, in a stable order."""
    return sorted(result["awarenessStates"], key=json.dumps)


async def test_node_and_pycrdt_clients_edit_concurrently_and_converge(connect, node_client):
    from_py, from_node = "pycrdt wrote this é; ", "yjs wrote this 🚀; "
    tail = "and a tail from pycrdt"
    py: YClient = await connect("interop-concurrent")
    py.text.insert(0, from_py)
    # The Node client's edit is made offline, before it connects: neither edit has
    # seen the other, both at index 0; the server merges them in the sync handshake.
    node = await node_client(
        "interop-concurrent",
        insert=from_node,
        at=0,
        insert_before_connect=True,
        expect_contains=[from_py, tail],
        hold_stdin=True,
    )
    await eventually(lambda: from_node in str(py.text), what="the Node edit reaches pycrdt")
    py.text.insert(len(py.text), tail)  # a live edit while both are connected

    result = await node.result()
    await eventually(lambda: tail in str(py.text), what="pycrdt's own edit echoed")
    assert result["synced"] is True
    assert result["text"] == str(py.text)
    assert result["text"] in {from_py + from_node + tail, from_node + from_py + tail}
    await node.finish()


async def test_stored_document_syncs_to_a_node_client_that_joins_later(
    connect, node_client, server
):
    stored = "stored by pycrdt ✓"
    writer: YClient = await connect("interop-stored")
    writer.text.insert(0, stored)
    await eventually(lambda: writer.received_updates >= 1, what="the write's echo (durable)")
    await writer.close()
    registry = server.runtime.registry
    await eventually(lambda: "interop-stored" not in registry.rooms, what="room unloaded")

    # It appends once synced, so the result proves the stored text came first.
    node = await node_client("interop-stored", insert=" + yjs", expect=stored + " + yjs")
    assert (await node.run())["text"] == stored + " + yjs"
    assert _loads(server) == 2, "the Node client's document was loaded from storage"

    # ...and its edit was stored: a fresh pycrdt client and the REST API see it.
    await eventually(lambda: "interop-stored" not in registry.rooms, what="room unloaded again")
    reader: YClient = await connect("interop-stored")
    assert str(reader.text) == stored + " + yjs"
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        response = await http.get("/api/documents/interop-stored")
    assert response.status_code == 200
    assert response.json()["content"]["text"] == stored + " + yjs"


async def test_two_node_clients_and_pycrdt_converge_and_see_each_others_presence(
    connect, node_client
):
    document = "interop-crowd"
    pieces = ["<alice>", "<bob>", "<pycrdt>"]
    py: YClient = await connect(document)
    await py.set_presence(user("pycrdt-user"))
    alice = await node_client(
        document,
        insert="<alice>",
        presence="alice",
        expect_contains=pieces,
        expect_presence=["pycrdt-user", "bob"],
        hold_stdin=True,
    )
    bob = await node_client(
        document,
        insert="<bob>",
        at=0,
        presence="bob",
        expect_contains=pieces,
        expect_presence=["pycrdt-user", "alice"],
        hold_stdin=True,
    )
    py.text.insert(len(py.text), "<pycrdt>")

    alice_result, bob_result = await asyncio.gather(alice.result(), bob.result())
    await eventually(lambda: all(p in str(py.text) for p in pieces), what="pycrdt has all edits")
    assert alice_result["text"] == bob_result["text"] == str(py.text)
    assert all(str(py.text).count(p) == 1 for p in pieces)

    # Presence both ways, with no ghost states: each Node client sees pycrdt's
    # (sent to it on join) and the other Node client's...
    assert presences(alice_result) == [user("bob"), user("pycrdt-user")]
    assert presences(bob_result) == [user("alice"), user("pycrdt-user")]
    # ...and pycrdt sees both Node clients, under their Yjs client ids.
    node_presence = {alice_result["clientId"]: user("alice"), bob_result["clientId"]: user("bob")}
    await eventually(
        lambda: py.presence_of_others() == node_presence,
        what=f"pycrdt sees exactly {node_presence}",
    )

    await asyncio.gather(alice.finish(), bob.finish())
    await eventually(
        lambda: py.presence_of_others() == {},
        what="the Node clients' presence is gone once they disconnect",
    )


async def test_a_deleted_document_is_not_re_uploaded_by_y_websocket(connect, server, node_client):
    """4410 is permanent for y-websocket v3: it stops reconnecting instead of
    re-creating the document from its own copy."""
    author = await connect("gone")
    author.text.insert(0, "confidential")
    await eventually(lambda: author.received_updates == 1)
    node = await node_client("gone", expect="confidential", expect_closed=True)
    assert (await node.result())["text"] == "confidential"
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.delete("/api/documents/gone")).status_code == 204
        closed = (await node.result())["closed"]
        assert closed["code"] == 4410
        assert await asyncio.wait_for(node.process.wait(), 30) == 0
        assert (await http.get("/api/documents/gone")).status_code == 404
    assert await author.wait_closed() == 4410


def _loads(server: RunningServer) -> float:
    return metric_value(server.runtime.metrics, "collab_documents_loaded_total")


async def test_the_python_clients_cursor_is_where_yjs_reads_it(server, node_client):
    """collab.client's relative positions count UTF-16 units, as Yjs does: past an
    emoji and an accent, Yjs still resolves them to the intended characters."""
    from pycrdt import Text

    from collab.client import connect

    async with connect(f"ws://127.0.0.1:{server.port}/ws", "cursor") as session:
        text = session.doc.get("text", type=Text)
        text += "🚀 café au lait"
        await session.saved()
        session.presence.set({"user": {"name": "bot", "color": "#0e7490"}})
        session.presence.set_cursor("text", "🚀 café au lait".index("au"), head=len(str(text)))
        node = await node_client("cursor", expect_cursor=["bot"], insert="» ", at="0")
        result = await node.run()
    assert result["text"] == "» 🚀 café au lait"
    # Yjs indices count UTF-16 units (the emoji is two); the caret stayed on "au"
    # while the Node client typed before it
    start = len("» 🚀 café ".encode("utf-16-le")) // 2
    assert result["cursors"]["bot"]["anchor"] == start
    assert result["cursors"]["bot"]["head"] == len(result["text"].encode("utf-16-le")) // 2
