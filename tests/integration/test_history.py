"""Version history over the real server: list, save, show, update, diff, restore;
and where the heavy part of a diff or restore runs, and how much of it is allowed."""

from __future__ import annotations

import asyncio
import os
import random
import time

import httpx
import pytest
from pycrdt import Array, Doc, Map, Text, create_update_message

from tests.support.nodeclient import require_node
from tests.support.server import run_server
from tests.support.waiting import eventually
from tests.support.yclient import YClient

MIB = 1 << 20
HEADING = "# Notes\n"


def api(server) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"{server.http_url}/api/documents", timeout=30)


async def _typed(client, text: str) -> None:
    """Replace the client's text and wait until the server has it durably."""
    before = client.received_updates
    with client.doc.transaction():
        del client.text[0 : len(client.text)]
        client.text.insert(0, text)
    await eventually(lambda: client.received_updates > before)


async def _save(http, document: str, label: str, author: str | None = None) -> dict:
    response = await http.post(f"/{document}/snapshots", json={"label": label, "author": author})
    assert response.status_code == 201, response.text
    return response.json()


async def test_saving_and_listing_with_pagination(connect, server):
    client = await connect("doc")
    async with api(server) as http:
        ids = []
        for i in range(5):
            await _typed(client, f"version {i}")
            ids.append((await _save(http, "doc", f"v{i}", "ada"))["id"])
        first = (await http.get("/doc/snapshots", params={"limit": 2})).json()
        assert [s["id"] for s in first["snapshots"]] == ids[::-1][:2]
        second = (
            await http.get("/doc/snapshots", params={"limit": 2, "before": first["next_before"]})
        ).json()
        assert [s["id"] for s in second["snapshots"]] == ids[::-1][2:4]
        everything = (await http.get("/doc/snapshots", params={"limit": 500})).json()
    assert everything["next_before"] is None
    named = [s for s in everything["snapshots"] if s["kind"] == "named"]
    assert [s["label"] for s in named] == ["v4", "v3", "v2", "v1", "v0"]
    newest = named[0]
    assert newest["author"] == "ada" and newest["document"] == "doc"
    assert newest["preview"] == "version 4" and newest["size_bytes"] > 0
    assert newest["created_at"] <= newest["updated_at"]


async def test_snapshot_content_and_update_show_that_moment(connect, server):
    client = await connect("doc")
    client.map()["title"] = "Plan"
    await _typed(client, "then")
    async with api(server) as http:
        saved = await _save(http, "doc", "then")
        await _typed(client, "now")
        shown = (await http.get(f"/doc/snapshots/{saved['id']}")).json()
        update = await http.get(f"/doc/snapshots/{saved['id']}/update")
    assert shown["content"] == {"text": "then", "map": {"title": "Plan"}}
    assert shown["snapshot"]["id"] == saved["id"] and shown["name"] == "doc"
    assert update.headers["content-type"] == "application/octet-stream"
    preview: Doc = Doc()
    preview.apply_update(update.content)
    assert str(preview.get("text", type=Text)) == "then"


async def test_diff_against_current_and_another_snapshot(connect, server):
    client = await connect("doc")
    await _typed(client, "the quick brown fox")
    async with api(server) as http:
        old = await _save(http, "doc", "old")
        await _typed(client, "the quick red fox jumps")
        new = await _save(http, "doc", "new")
        await _typed(client, "a quick red fox")
        against_current = (await http.get(f"/doc/snapshots/{old['id']}/diff")).json()
        against_new = (
            await http.get(f"/doc/snapshots/{old['id']}/diff", params={"against": new["id"]})
        ).json()
    for diff, after in (
        (against_current, "a quick red fox"),
        (against_new, "the quick red fox jumps"),
    ):
        [root] = diff["text_roots"]
        hunks = root["hunks"]
        assert "".join(h["text"] for h in hunks if h["op"] != "insert") == "the quick brown fox"
        assert "".join(h["text"] for h in hunks if h["op"] != "delete") == after
        assert any(h["op"] == "equal" and "quick " in h["text"] for h in hunks)
        assert root["deleted_chars"] == sum(len(h["text"]) for h in hunks if h["op"] == "delete")
    assert against_new["against"] == new["id"] and against_current["against"] == "current"


async def test_restore_converges_pycrdt_and_node_clients(connect, server, node_client):
    require_node()
    a = await connect("doc")
    b = await connect("doc")
    await _typed(a, "the original text")
    async with api(server) as http:
        saved = await _save(http, "doc", "original")
        await _typed(a, "something else entirely, later")
        node = await node_client(
            "doc", presence="node", expect="the original text", hold_stdin=True
        )
        await eventually(lambda: {"node"} <= _names(b), what="node client connected")
        response = await http.post(f"/doc/snapshots/{saved['id']}/restore")
        assert response.status_code == 200, response.text
        result = response.json()
    assert result["restored_snapshot_id"] == saved["id"] and result["changed"] is True
    await eventually(lambda: str(a.text) == str(b.text) == "the original text")
    assert (await node.result())["text"] == "the original text"
    await node.finish()
    assert a.close_code is None and b.close_code is None


def _names(client) -> set[str]:
    return {s.get("user", {}).get("name") for s in client.presence_of_others().values() if s}


async def test_an_edit_racing_the_restore_is_kept(connect, server):
    a = await connect("doc")
    b = await connect("doc")
    await _typed(a, "alpha beta gamma")
    async with api(server) as http:
        saved = await _save(http, "doc", "abg")
        await _typed(a, "alpha BETA gamma delta")
        await eventually(lambda: str(b.text) == "alpha BETA gamma delta")
        # b types while the restore happens: its edit is made on b's replica before b
        # has seen the restore, and reaches the server only after it.
        replica: Doc = Doc()
        replica.apply_update(b.doc.get_update())
        replica.get("text", type=Text).insert(0, ">> ")
        racing_edit = replica.get_update(b.doc.get_state())
        assert (await http.post(f"/doc/snapshots/{saved['id']}/restore")).status_code == 200
        await b.send_raw(create_update_message(racing_edit))
        a.text.insert(len(a.text), " (after)")  # and an edit made after the restore
    expected = ">> alpha beta gamma (after)"
    await eventually(lambda: str(a.text) == str(b.text) == expected)
    async with api(server) as http:
        assert (await http.get("/doc")).json()["content"]["text"] == expected


async def test_a_restore_is_undone_by_restoring_its_pre_restore_snapshot(connect, server):
    client = await connect("doc")
    await _typed(client, "first draft")
    async with api(server) as http:
        first = await _save(http, "doc", "first")
        await _typed(client, "second draft, much better")
        restored = (await http.post(f"/doc/snapshots/{first['id']}/restore")).json()
        await eventually(lambda: str(client.text) == "first draft")
        pre = (await http.get(f"/doc/snapshots/{restored['pre_restore_snapshot_id']}")).json()
        assert pre["snapshot"]["kind"] == "pre-restore"
        assert pre["content"]["text"] == "second draft, much better"
        undo = await http.post(f"/doc/snapshots/{pre['snapshot']['id']}/restore")
        assert undo.status_code == 200
    await eventually(lambda: str(client.text) == "second draft, much better")


async def test_restoring_nested_map_and_array_content(connect, server):
    a = await connect("doc")
    b = await connect("doc")
    a.map()["meta"] = Map({"tags": Array(["x", "y"]), "note": Text("keep me"), "n": 1})
    a.array().extend(["one", "two", Map({"k": "v"})])
    await eventually(lambda: b.map().to_py() == a.map().to_py() and len(b.array()) == 3)
    async with api(server) as http:
        saved = await _save(http, "doc", "structured")
        expected = (await http.get(f"/doc/snapshots/{saved['id']}")).json()["content"]
        meta = a.map()["meta"]
        meta["tags"].append("z")
        meta["note"].insert(0, "don't ")
        del meta["n"]
        a.map()["extra"] = True
        a.array().insert(0, "zero")
        del a.array()[2]
        await eventually(lambda: b.map().to_py() == a.map().to_py() and len(b.array()) == 3)
        assert (await http.post(f"/doc/snapshots/{saved['id']}/restore")).status_code == 200
        await eventually(lambda: b.map().to_py() == expected["map"])
        await eventually(lambda: a.array().to_py() == b.array().to_py() == expected["array"])
        current = (await http.get("/doc")).json()["content"]
    assert current == expected
    assert isinstance(b.map()["meta"]["note"], Text)


async def test_restore_works_when_the_document_is_not_loaded(connect, server):
    client = await connect("cold")
    await _typed(client, "kept")
    async with api(server) as http:
        saved = await _save(http, "cold", "kept")
        await _typed(client, "changed")
        await client.close()
        await eventually(lambda: "cold" not in server.runtime.registry.rooms)
        assert (await http.post(f"/cold/snapshots/{saved['id']}/restore")).status_code == 200
        assert (await http.get("/cold")).json()["content"] == {"text": "kept"}
    reader = await connect("cold")
    assert str(reader.text) == "kept"


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("get", "/nope/snapshots", None, 404),
        ("post", "/nope/snapshots", {"label": "x"}, 404),
        ("get", "/doc/snapshots/999999", None, 404),
        ("get", "/doc/snapshots/999999/update", None, 404),
        ("get", "/doc/snapshots/999999/diff", None, 404),
        ("post", "/doc/snapshots/999999/restore", None, 404),
        ("get", "/doc/snapshots/abc", None, 422),
        ("get", "/doc/snapshots?limit=0", None, 422),
        ("get", "/doc/snapshots?before=-1", None, 422),
        ("get", "/doc/snapshots/{id}/diff?against=yesterday", None, 422),
        ("post", "/doc/snapshots", {"label": ""}, 422),
        ("post", "/doc/snapshots", {"author": "no label"}, 422),
        ("post", "/doc/snapshots", {"label": "x", "colour": "red"}, 422),
        ("post", "/bad%20name/snapshots", {"label": "x"}, 422),
    ],
)
async def test_unknown_ids_and_bad_input(connect, server, method, path, body, status):
    client = await connect("doc")
    await _typed(client, "exists")
    async with api(server) as http:
        saved = await _save(http, "doc", "exists")
        response = await http.request(
            method.upper(), path.replace("{id}", str(saved["id"])), json=body
        )
    assert response.status_code == status, response.text
    assert response.json()["detail"]


# -- heavy work: where it runs and how much of it -------------------------------


def _prose(chars: int, seed: int) -> str:
    """Lines of random words: two seeds give texts a diff can only match word by
    word, the slow case (about a second of CPU per MB)."""
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    lines, size = [], 0
    while size < chars:
        line = " ".join(rng.choice(words) for _ in range(12)) + "\n"
        lines.append(line)
        size += len(line)
    return "".join(lines)[:chars]


async def _two_versions(server, document: str, chars: int) -> tuple[YClient, dict, str, str]:
    """A document with a saved version of one text, and another text now; the
    two start with the same heading."""
    client = await YClient(server.ws_url(document)).connect()
    then, now = HEADING + _prose(chars, 1), HEADING + _prose(chars, 2)
    await _typed(client, then)
    async with api(server) as http:
        saved = await _save(http, document, "then")
    await _typed(client, now)
    return client, saved, then, now


class LoopProbe:
    """Measures the longest the event loop went without running this task (which
    asks to run every 10 ms): how long the server could not serve anyone."""

    def __init__(self) -> None:
        self.longest_stall_s = 0.0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopProbe:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            self.longest_stall_s = max(self.longest_stall_s, time.monotonic() - before - 0.01)


def _ran_elsewhere(server) -> list[int]:
    """The processes other than this one (the server's) that computed jobs."""
    return [pid for pid in server.runtime.history.compute.jobs_by_pid if pid != os.getpid()]


async def test_a_big_diff_runs_in_a_worker_process_while_other_rooms_are_served(settings):
    async with run_server(settings.replace(history_workers=1)) as server:
        client, saved, then, now = await _two_versions(server, "big", 2 * MIB)
        a = await YClient(server.ws_url("elsewhere")).connect()
        b = await YClient(server.ws_url("elsewhere")).connect()
        try:
            async with api(server) as http:
                diff = asyncio.create_task(http.get(f"/big/snapshots/{saved['id']}/diff"))
                compute = server.runtime.history.compute
                await eventually(lambda: compute.busy == 1, what="diff computing")
                # Another room's edit goes round, and /healthz answers, meanwhile.
                a.text.insert(0, "still served")
                await eventually(lambda: str(b.text) == "still served", what="edit relayed")
                health = await http.get(f"{server.http_url}/healthz")
                assert health.status_code == 200
                assert not diff.done(), "the edit was served while the diff ran"
                response = await diff
            assert response.status_code == 200, response.text
            [root] = response.json()["text_roots"]
            hunks = root["hunks"]
            assert "".join(h["text"] for h in hunks if h["op"] != "insert") == then
            assert "".join(h["text"] for h in hunks if h["op"] != "delete") == now
            assert len(_ran_elsewhere(server)) == 1, "computed in another process"
            assert server.runtime.history.compute.busy == 0
        finally:
            await asyncio.gather(client.close(), a.close(), b.close())


async def test_more_simultaneous_diffs_than_workers_are_refused_with_429_and_a_reason(settings):
    async with run_server(settings.replace(history_workers=2)) as server:
        client, saved, _, _ = await _two_versions(server, "big", MIB // 2)
        try:
            async with api(server) as http:
                path = f"/big/snapshots/{saved['id']}/diff"
                responses = await asyncio.gather(*(http.get(path) for _ in range(3)))
                statuses = sorted(r.status_code for r in responses)
                assert statuses == [200, 200, 429], [r.text[:200] for r in responses]
                [refused] = [r for r in responses if r.status_code == 429]
                assert "retry" in refused.json()["detail"]
                assert refused.headers["retry-after"] == "1"
                # Slots are given back: the next one is computed.
                assert (await http.get(path)).status_code == 200
        finally:
            await client.close()


async def test_a_diff_of_a_version_beyond_the_size_cap_is_refused_with_413(settings):
    async with run_server(settings.replace(diff_max_bytes=4000)) as server:
        client = await YClient(server.ws_url("doc")).connect()
        try:
            await _typed(client, "small")
            async with api(server) as http:
                small = await _save(http, "doc", "small")
                assert (await http.get(f"/doc/snapshots/{small['id']}/diff")).status_code == 200
                await _typed(client, "x" * 5000)  # the current content is over the cap
                refused = await http.get(f"/doc/snapshots/{small['id']}/diff")
                assert refused.status_code == 413
                assert "COLLAB_DIFF_MAX_BYTES" in refused.json()["detail"]
                large = await _save(http, "doc", "large")
                await _typed(client, "small again")
                refused = await http.get(f"/doc/snapshots/{large['id']}/diff")
                assert refused.status_code == 413
        finally:
            await client.close()


async def test_a_big_restore_is_computed_in_a_worker_process_not_on_the_event_loop(connect, server):
    client, saved, then, _ = await _two_versions(server, "big", 2 * MIB)
    try:
        async with api(server) as http, LoopProbe() as probe:
            started = time.monotonic()
            response = await http.post(f"/big/snapshots/{saved['id']}/restore")
            took_s = time.monotonic() - started
        assert response.status_code == 200, response.text
        await eventually(lambda: str(client.text) == then, what="restore relayed")
        # Before, the whole restore ran on the event loop: it stalled as long as
        # the restore took. Now the loop only applies the result.
        assert probe.longest_stall_s < took_s / 2, (probe.longest_stall_s, took_s)
        assert len(_ran_elsewhere(server)) == 1, "computed in another process"
    finally:
        await client.close()


async def test_an_edit_made_while_a_restore_is_computed_is_kept_and_in_the_pre_restore_version(
    connect, server
):
    client, saved, then, now = await _two_versions(server, "big", MIB)
    other = await connect("big")
    try:
        async with api(server) as http:
            restore = asyncio.create_task(http.post(f"/big/snapshots/{saved['id']}/restore"))
            compute = server.runtime.history.compute
            await eventually(lambda: compute.busy == 1, what="restore computing")
            other.text.insert(2, "<typed meanwhile>")  # in the heading, which both have
            await eventually(other.is_saved, what="edit committed")
            response = await restore
            assert response.status_code == 200, response.text
            pre_restore_id = response.json()["pre_restore_snapshot_id"]
            pre_restore = (await http.get(f"/big/snapshots/{pre_restore_id}")).json()
        # The restore's operations merge with the edit as with any concurrent one.
        expected = then[:2] + "<typed meanwhile>" + then[2:]
        await eventually(lambda: str(client.text) == str(other.text) == expected)
        # The pre-restore version is the state the restore was applied to.
        assert pre_restore["content"]["text"] == now[:2] + "<typed meanwhile>" + now[2:]
    finally:
        await client.close()
