"""The HTTP API: health, listing, content as JSON, deletion, errors, OpenAPI."""

from __future__ import annotations

import httpx
from pycrdt import Array, Map, Text

from collab.errors import CloseCode
from tests.support.waiting import eventually


async def _http(server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=server.http_url, timeout=10)


async def test_healthz(server):
    async with await _http(server) as http:
        response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


async def test_document_content_infers_root_types(connect, server):
    client = await connect("typed")
    doc = client.doc
    doc["notes"] = Text("hello")
    doc["meta"] = Map({"title": "Plan", "tags": Array(["a", "b"]), "body": Text("nested")})
    doc["items"] = Array([1, "two", Map({"three": 3})])
    await eventually(client.is_saved)
    async with await _http(server) as http:
        response = await http.get("/api/documents/typed")
    assert response.status_code == 200
    assert response.json() == {
        "name": "typed",
        "content": {
            "notes": "hello",
            "meta": {"title": "Plan", "tags": ["a", "b"], "body": "nested"},
            "items": [1, "two", {"three": 3}],
        },
    }


async def test_content_of_an_unloaded_document_comes_from_storage(connect, server):
    client = await connect("cold")
    client.text.insert(0, "from disk")
    await eventually(lambda: client.received_updates == 1)
    await client.close()
    await eventually(lambda: "cold" not in server.runtime.registry.rooms)
    async with await _http(server) as http:
        response = await http.get("/api/documents/cold")
    assert response.json()["content"] == {"text": "from disk"}


async def test_listing_shows_size_time_and_live_connections(connect, server):
    a = await connect("listed")
    await connect("listed")
    a.text.insert(0, "x" * 1000)
    await eventually(lambda: a.received_updates == 1)
    async with await _http(server) as http:
        [entry] = (await http.get("/api/documents")).json()
    assert entry["name"] == "listed"
    assert entry["live_connections"] == 2
    assert entry["size_bytes"] > 1000
    assert entry["updated_at"] and entry["created_at"]


async def test_unknown_document_is_a_json_404(server):
    async with await _http(server) as http:
        response = await http.get("/api/documents/nope")
        deleted = await http.delete("/api/documents/nope")
    assert response.status_code == 404 and "nope" in response.json()["detail"]
    assert deleted.status_code == 404 and deleted.json()["detail"]


async def test_bad_document_name_is_a_422(server):
    async with await _http(server) as http:
        response = await http.get("/api/documents/bad%20name")
    assert response.status_code == 422
    assert response.json()["detail"]


async def test_delete_disconnects_clients_and_removes_data(connect, server):
    a = await connect("doomed")
    a.text.insert(0, "bye")
    await eventually(lambda: a.received_updates == 1)
    async with await _http(server) as http:
        response = await http.delete("/api/documents/doomed")
        assert response.status_code == 204
        assert await a.wait_closed() == CloseCode.DOCUMENT_DELETED
        assert (await http.get("/api/documents/doomed")).status_code == 404
        assert (await http.get("/api/documents")).json() == []
    fresh = await connect("doomed")
    assert str(fresh.text) == ""
    # written again at once: the store must not trust its memory of the old row
    fresh.text.insert(0, "reborn")
    await eventually(lambda: fresh.received_updates == 1)
    async with await _http(server) as http:
        assert (await http.get("/api/documents/doomed")).json()["content"] == {"text": "reborn"}


async def test_openapi_documents_the_api(server):
    async with await _http(server) as http:
        schema = (await http.get("/openapi.json")).json()
    assert {"/healthz", "/api/documents", "/api/documents/{name}"} <= set(schema["paths"])
    assert "404" in schema["paths"]["/api/documents/{name}"]["get"]["responses"]
