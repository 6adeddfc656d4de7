"""Presence: relayed, given to joiners, and removed the moment a connection goes;
what one connection can do to it is bounded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from pycrdt import create_awareness_message, create_sync_message, write_message, write_var_uint

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


# -- bounds: frames built by hand, as a hostile client would -------------------


def _awareness_frame(*entries: tuple[int, int, Any]) -> bytes:
    """An awareness message of (client id, clock, state) entries."""
    encoded = [
        write_var_uint(client_id) + write_var_uint(clock) + write_message(json.dumps(s).encode())
        for client_id, clock, s in entries
    ]
    return create_awareness_message(write_var_uint(len(encoded)) + b"".join(encoded))


async def test_one_connection_shows_at_most_four_client_ids(connect, server):
    watcher = await connect("doc")
    greedy = await connect("doc")
    await greedy.send_raw(
        _awareness_frame(*[(i, 1, {"user": {"name": f"bot {i}"}}) for i in range(1, 41)])
    )
    await eventually(lambda: len(_names(watcher)) >= 4)
    room = server.runtime.registry.rooms["doc"]
    assert len(room.awareness.states) == 4 and len(room.awareness.meta) == 4
    assert _names(watcher) == {"bot 1", "bot 2", "bot 3", "bot 4"}


async def test_removals_of_others_presence_are_ignored_and_leave_nothing_behind(connect, server):
    watcher = await connect("doc")
    ada = await connect("doc")
    mallory = await connect("doc")
    await ada.set_presence({"user": {"name": "ada"}})
    await eventually(lambda: _names(watcher) == {"ada"})
    # Ada's removal at a newer clock, and 6,000 removals of ids nobody has (54 KB).
    await mallory.send_raw(_awareness_frame((ada.doc.client_id, 99, None)))
    await mallory.send_raw(_awareness_frame(*[(i, 1, None) for i in range(10**6, 10**6 + 6000)]))
    await mallory.set_presence({"user": {"name": "mallory"}})  # handled after them
    await eventually(lambda: "mallory" in _names(watcher))
    assert _names(watcher) == {"ada", "mallory"}
    room = server.runtime.registry.rooms["doc"]
    assert set(room.awareness.meta) == {ada.doc.client_id, mallory.doc.client_id}


async def test_an_empty_state_is_not_relayed_and_clearing_a_state_removes_it(connect):
    watcher = await connect("doc")
    client = await connect("doc")
    await client.set_presence({})
    await client.set_presence({"user": {"name": "ada"}})
    await eventually(lambda: _names(watcher) == {"ada"})
    await client.set_presence({})
    await eventually(lambda: watcher.presence_of_others() == {}, what="cleared: no {} state")
    await client.set_presence({"user": {"name": "ada"}, "cursor": 3})
    await eventually(lambda: _names(watcher) == {"ada"})


async def test_a_query_awareness_flood_is_answered_once(connect):
    a = await connect("doc")
    b = await connect("doc")
    await a.set_presence({"user": {"name": "ada"}})
    await eventually(lambda: _names(b) == {"ada"})
    before = b.received_messages
    b.synced.clear()
    for _ in range(300):
        await b.send_raw(b"\x03")
    await b.send_raw(create_sync_message(b.doc))  # answered after the queries
    await asyncio.wait_for(b.synced.wait(), 10)
    assert b.received_messages - before == 2, "one answer, then the sync step 2"


async def test_the_document_list_reports_a_valid_colour_and_a_clean_bounded_name(connect, server):
    client = await connect("doc")
    name = "<b>Eve</b>\u202e\x00\n  Lovelace" + "e" * 300
    await client.set_presence({"user": {"name": name, "color": "red; background: url(//x)"}})
    expected = [{"name": ("<b>Eve</b> Lovelace" + "e" * 300)[:100], "color": ""}]

    async def listed() -> bool:
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            listing = (await http.get("/api/documents")).json()
        return next(d["present"] for d in listing if d["name"] == "doc") == expected

    await eventually(listed, what=f"the listing shows {expected}")
