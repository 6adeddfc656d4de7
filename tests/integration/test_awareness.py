"""Presence: relayed, given to joiners, and removed the moment a connection goes."""

from __future__ import annotations

import asyncio

import pytest
from pycrdt import create_awareness_message

from collab.protocol.codec import KEEPALIVE_MESSAGE
from tests.support.server import run_server
from tests.support.waiting import eventually
from tests.support.yclient import YClient


def _names(client: YClient) -> set[str]:
    return {s["user"]["name"] for s in client.presence_of_others().values() if s}


async def test_presence_is_relayed_and_updated(connect):
    a = await connect("doc")
    b = await connect("doc")
    await a.set_presence({"user": {"name": "ada"}, "cursor": 1})
    await eventually(lambda: _names(b) == {"ada"})
    await a.set_presence({"user": {"name": "ada"}, "cursor": 7})
    await eventually(lambda: b.presence_of_others()[a.doc.client_id]["cursor"] == 7)


async def test_joining_client_receives_current_presence(connect):
    a = await connect("doc")
    b = await connect("doc")
    await a.set_presence({"user": {"name": "ada"}})
    await b.set_presence({"user": {"name": "bob"}})
    await eventually(lambda: _names(a) == {"bob"})
    c = await connect("doc")
    await eventually(lambda: _names(c) == {"ada", "bob"})


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_presence_is_removed_when_a_connection_goes(connect, server, how):
    a = await connect("doc")
    b = await connect("doc")
    await a.set_presence({"user": {"name": "ada"}})
    await eventually(lambda: _names(b) == {"ada"})
    await (a.close() if how == "close" else a.abort())
    await eventually(lambda: _names(b) == set(), what=f"ghost cursor after {how}")
    room = server.runtime.registry.rooms["doc"]
    await eventually(lambda: a.doc.client_id not in room.awareness.states)


async def test_a_reconnected_client_keeps_its_presence_when_its_old_connection_closes(
    connect, server
):
    watcher = await connect("doc")
    old = await connect("doc")
    await old.set_presence({"user": {"name": "ada"}})
    await eventually(lambda: _names(watcher) == {"ada"})
    # The same client (same Doc and awareness) is back on a new connection, with a
    # new clock, before the server has noticed its old connection is gone.
    new = YClient(server.ws_url("doc"), doc=old.doc)
    new.awareness = old.awareness
    await new.connect()
    old.awareness.set_local_state({"user": {"name": "ada"}})
    payload = old.awareness.encode_awareness_update([old.doc.client_id])
    await new.send_raw(create_awareness_message(payload))
    room = server.runtime.registry.rooms["doc"]
    await eventually(lambda: old.doc.client_id in room.peers[max(room.peers)].client_ids)

    await old.close()
    await eventually(lambda: len(room.peers) == 2)
    assert old.doc.client_id in room.awareness.states
    assert _names(watcher) == {"ada"}
    await new.close()
    await eventually(lambda: _names(watcher) == set(), what="removed when the new one goes")


async def test_query_awareness_is_answered_with_all_states(connect):
    a = await connect("doc")
    b = await connect("doc")
    await a.set_presence({"user": {"name": "ada"}})
    await eventually(lambda: _names(b) == {"ada"})
    before = b.received_messages
    await b.send_raw(b"\x03")
    await eventually(lambda: b.received_messages > before)


async def test_idle_connection_hears_keepalives(settings):
    async with run_server(settings.replace(keepalive_interval_s=0.1)) as server:
        client = YClient(server.ws_url("quiet"))
        await client.connect()
        seen = client.received_messages
        await eventually(lambda: client.received_messages >= seen + 3, what="keep-alives")
        await client.close()
    assert KEEPALIVE_MESSAGE == b"\x01\x01\x00"
    await asyncio.sleep(0)
