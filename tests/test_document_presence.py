"""GET /api/documents reports who is in each document, from awareness states."""

from __future__ import annotations

import httpx
from pycrdt import Text

from tests.helpers import eventually


async def _present(server, name: str) -> list[dict[str, str]] | None:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        listing = (await http.get("/api/documents")).json()
    return next((doc["present"] for doc in listing if doc["name"] == name), None)


async def test_listing_shows_who_is_present_and_drops_who_leaves(connect, server):
    ada = await connect("notes")
    bob = await connect("notes")
    await ada.set_presence({"user": {"name": "Ada", "color": "#c2410c", "colorLight": "#c2410c33"}})
    await bob.set_presence({"user": {"name": "Bob", "color": "#1d4ed8"}, "cursor": None})

    async def both_present() -> bool:
        return await _present(server, "notes") == [
            {"name": "Ada", "color": "#c2410c"},
            {"name": "Bob", "color": "#1d4ed8"},
        ]

    await eventually(both_present, what="Ada and Bob listed")
    await bob.close()

    async def only_ada() -> bool:
        return await _present(server, "notes") == [{"name": "Ada", "color": "#c2410c"}]

    await eventually(only_ada, what="Bob dropped after leaving")


async def test_one_person_in_two_tabs_is_listed_once(connect, server):
    tabs = [await connect("notes"), await connect("notes")]
    for tab in tabs:
        await tab.set_presence({"user": {"name": "Ada", "color": "#c2410c"}})

    async def listed_once() -> bool:
        room = server.services.registry.rooms["notes"]
        return len(room.awareness.states) == 2 and await _present(server, "notes") == [
            {"name": "Ada", "color": "#c2410c"}
        ]

    await eventually(listed_once)


async def test_states_that_do_not_name_a_user_are_not_people(connect, server):
    client = await connect("notes")
    other = await connect("notes")
    await client.set_presence({"cursor": {"anchor": 1}})
    await other.set_presence({"user": {"name": "  ", "color": 7}})
    named = await connect("notes")
    await named.set_presence({"user": {"name": "Cy"}})

    async def only_cy() -> bool:
        room = server.services.registry.rooms["notes"]
        return len(room.awareness.states) == 3 and await _present(server, "notes") == [
            {"name": "Cy", "color": ""}
        ]

    await eventually(only_cy)


async def test_a_live_document_not_yet_stored_is_listed_with_its_people(connect, server):
    client = await connect("fresh")
    await client.set_presence({"user": {"name": "Ada", "color": "#c2410c"}})

    async def listed() -> bool:
        return await _present(server, "fresh") == [{"name": "Ada", "color": "#c2410c"}]

    await eventually(listed)
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        entry = next(d for d in (await http.get("/api/documents")).json() if d["name"] == "fresh")
    assert entry["created_at"] is None and entry["live_connections"] == 1


async def test_stored_document_with_nobody_in_it_has_no_one_present(connect, server):
    client = await connect("quiet")
    client.doc.get("content", type=Text).insert(0, "hello")
    await eventually(lambda: client.received_updates == 1)
    await client.close()
    assert await _present(server, "quiet") == []
