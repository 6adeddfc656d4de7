"""GET /api/documents reports who is in each document, from awareness states."""

from __future__ import annotations

import httpx
from pycrdt import Text

from tests.support.waiting import eventually


async def _present(server, name: str) -> list[dict[str, str]] | None:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        listing = (await http.get("/api/documents")).json()
    return next((doc["present"] for doc in listing if doc["name"] == name), None)


async def _wait_until_present(
    server, name: str, expected: list[dict[str, str]], *, states: int | None = None
) -> None:
    """Until the listing shows `expected` (once the room holds `states` awareness states)."""

    async def shown() -> bool:
        room = server.runtime.registry.rooms.get(name)
        if states is not None and (room is None or len(room.awareness.states) != states):
            return False
        return await _present(server, name) == expected

    await eventually(shown, what=f"{name} lists {expected}")


async def test_listing_shows_who_is_present_and_drops_who_leaves(connect, server):
    ada = await connect("notes")
    bob = await connect("notes")
    await ada.set_presence({"user": {"name": "Ada", "color": "#c2410c", "colorLight": "#c2410c33"}})
    await bob.set_presence({"user": {"name": "Bob", "color": "#1d4ed8"}, "cursor": None})

    ada_listed = {"name": "Ada", "color": "#c2410c"}
    await _wait_until_present(server, "notes", [ada_listed, {"name": "Bob", "color": "#1d4ed8"}])
    await bob.close()
    await _wait_until_present(server, "notes", [ada_listed])


async def test_one_person_in_two_tabs_is_listed_once(connect, server):
    tabs = [await connect("notes"), await connect("notes")]
    for tab in tabs:
        await tab.set_presence({"user": {"name": "Ada", "color": "#c2410c"}})

    await _wait_until_present(server, "notes", [{"name": "Ada", "color": "#c2410c"}], states=2)


async def test_states_that_do_not_name_a_user_are_not_people(connect, server):
    client = await connect("notes")
    other = await connect("notes")
    await client.set_presence({"cursor": {"anchor": 1}})
    await other.set_presence({"user": {"name": "  ", "color": 7}})
    named = await connect("notes")
    await named.set_presence({"user": {"name": "Cy"}})

    await _wait_until_present(server, "notes", [{"name": "Cy", "color": ""}], states=3)


async def test_a_live_document_not_yet_stored_is_listed_with_its_people(connect, server):
    client = await connect("fresh")
    await client.set_presence({"user": {"name": "Ada", "color": "#c2410c"}})

    await _wait_until_present(server, "fresh", [{"name": "Ada", "color": "#c2410c"}])
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        entry = next(d for d in (await http.get("/api/documents")).json() if d["name"] == "fresh")
    assert entry["created_at"] is None and entry["live_connections"] == 1


async def test_stored_document_with_nobody_in_it_has_no_one_present(connect, server):
    client = await connect("quiet")
    client.doc.get("content", type=Text).insert(0, "hello")
    await eventually(lambda: client.received_updates == 1)
    await client.close()
    assert await _present(server, "quiet") == []
