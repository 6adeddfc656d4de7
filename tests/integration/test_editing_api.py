"""The HTTP editing API over a real server: binary updates, text deltas, replaced
content, copies, import and export, against live WebSocket clients; guards, bad
input, tokens, and the `collab export` / `collab import` commands."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pycrdt import Assoc, Doc, Text

from collab.config import Settings
from tests.support.server import run_collab, run_server, server_process
from tests.support.waiting import eventually
from tests.support.yclient import YClient, read_text

SECRET = "editing-api-test-secret-with-32-bytes+"
# Line endings, tabs, trailing spaces, non-BMP characters: exactly as given.
TRICKY_MARKDOWN = "# Título 🚀\r\n\r\n| a | b |\n|---|---|\n| 1 | 2 |\n\n- [ ] todo  \n\tend\n\n"


def api(server: Any, token: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.AsyncClient(
        base_url=f"{server.http_url}/api/documents", timeout=30, headers=headers
    )


def token(*documents: str, role: str = "write", sub: str = "robot") -> str:
    claims = {"exp": int(time.time()) + 600, "docs": list(documents), "role": role, "sub": sub}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def _typed(client: YClient, text: str) -> None:
    client.text.insert(len(client.text), text)
    await eventually(client.is_saved)


def _update_appending(doc: Doc, root: str, text: str) -> bytes:
    before = doc.get_state()
    doc.get(root, type=Text).insert(len(doc.get(root, type=Text)), text)
    return doc.get_update(before)


async def test_a_posted_update_reaches_live_clients_and_survives_a_restart(settings):
    async with run_server(settings) as server:
        client = await YClient(server.ws_url("doc")).connect()
        await _typed(client, "typed ")
        program: Doc = Doc()
        program.apply_update(client.doc.get_update())
        update = _update_appending(program, "text", "and posted")
        async with api(server) as http:
            response = await http.post(
                "/doc/updates",
                content=update,
                headers={"Content-Type": "application/octet-stream"},
            )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["changed"] is True and isinstance(answer["seq"], int)
        await eventually(lambda: str(client.text) == "typed and posted")
        await client.close()
    async with run_server(settings) as server:
        assert await read_text(server.ws_url("doc")) == "typed and posted"


async def test_text_deltas_converge_with_a_live_editor(connect, server):
    client = await connect("doc")
    await _typed(client, "Hello world")
    async with api(server) as http:
        response = await http.patch(
            "/doc/text/text", json=[{"retain": 6}, {"insert": "brave "}, {"delete": 5}]
        )
        assert response.status_code == 200, response.text
        await eventually(lambda: str(client.text) == "Hello brave ")
        client.text.insert(len(client.text), "new world")  # a concurrent edit merges
        await eventually(client.is_saved)
        shown = (await http.get("/doc/text/text")).json()
    assert shown["text"] == "Hello brave new world"


async def test_an_edit_based_on_an_older_state_is_refused_with_412(connect, server):
    client = await connect("doc")
    await _typed(client, "one")
    async with api(server) as http:
        read = await http.get("/doc/text/text")
        version = read.headers["ETag"]
        assert read.json()["state_vector"] == version.strip('"')
        await _typed(client, " two")  # someone edits after we read
        stale = await http.patch(
            "/doc/text/text", json=[{"retain": 3}, {"insert": "!"}], headers={"If-Match": version}
        )
        assert stale.status_code == 412, stale.text
        stale_base = await http.patch(
            "/doc/text/text",
            json={"delta": [{"insert": ">"}], "base": version.strip('"')},
        )
        assert stale_base.status_code == 412
        stale_put = await http.put(
            "/doc/content",
            params={"root": "text"},
            content="x",
            headers={"Content-Type": "text/plain", "If-Match": version},
        )
        assert stale_put.status_code == 412
        fresh = (await http.get("/doc/text/text")).headers["ETag"]
        ok = await http.patch(
            "/doc/text/text", json=[{"retain": 7}, {"insert": "!"}], headers={"If-Match": fresh}
        )
        assert ok.status_code == 200, ok.text
        # An edit's answer is the version to base the next one on.
        again = await http.patch(
            "/doc/text/text",
            json={"delta": [{"insert": "#"}], "base": ok.json()["state_vector"]},
        )
        assert again.status_code == 200, again.text
    await eventually(lambda: str(client.text) == "#one two!")


async def test_of_two_edits_based_on_the_same_version_exactly_one_is_applied(connect, server):
    client = await connect("doc")
    await _typed(client, "base")
    async with api(server) as http:
        version = (await http.get("/doc/text/text")).headers["ETag"]
        answers = await asyncio.gather(
            *(
                http.patch(
                    "/doc/text/text",
                    json=[{"retain": 4}, {"insert": f" by {who}"}],
                    headers={"If-Match": version},
                )
                for who in ("ann", "bob")
            )
        )
        final = (await http.get("/doc/text/text")).json()["text"]
    assert sorted(a.status_code for a in answers) == [200, 412]
    assert final in ("base by ann", "base by bob")


async def test_bad_input_gets_a_specific_answer(connect, server):
    client = await connect("doc")
    await _typed(client, "abc")
    client.map("settings")["theme"] = "dark"
    await eventually(client.is_saved)
    # An update that builds on an edit the server never saw would stay pending.
    elsewhere: Doc = Doc()
    _update_appending(elsewhere, "text", "first")
    depends = _update_appending(elsewhere, "text", " second")
    octets = {"Content-Type": "application/octet-stream"}
    async with api(server) as http:
        garbage = await http.post("/doc/updates", content=b"\xff\x01\x02", headers=octets)
        empty = await http.post("/doc/updates", content=b"", headers=octets)
        pending = await http.post("/doc/updates", content=depends, headers=octets)
        past_end = await http.patch("/doc/text/text", json=[{"retain": 4}, {"insert": "x"}])
        delete_past = await http.patch("/doc/text/text", json=[{"retain": 1}, {"delete": 3}])
        bad_op = await http.patch("/doc/text/text", json=[{"jump": 1}])
        a_map = await http.patch("/doc/text/settings", json=[{"insert": "x"}])
        missing = await http.patch("/nope/text/text", json=[{"insert": "x"}])
        bad_version = await http.patch(
            "/doc/text/text", json=[{"insert": "x"}], headers={"If-Match": '"***"'}
        )
        media = await http.put("/doc/content", content=b"x", headers={"Content-Type": "image/png"})
        text = (await http.get("/doc/text/text")).json()["text"]
    assert garbage.status_code == 400 and "invalid Yjs update" in garbage.json()["detail"]
    assert empty.status_code == 400
    assert pending.status_code == 409 and "does not hold" in pending.json()["detail"]
    assert past_end.status_code == 422 and "reaches character 4" in past_end.json()["detail"]
    assert delete_past.status_code == 422
    assert bad_op.status_code == 422
    assert a_map.status_code == 422 and "map" in a_map.json()["detail"]
    assert missing.status_code == 404
    assert bad_version.status_code == 400
    assert media.status_code == 415
    assert text == "abc"  # nothing refused was applied, nothing left pending
    assert str(client.text) == "abc"


async def test_a_pending_update_to_a_big_document_is_refused_too(connect, server):
    """Past the compute pool's inline size the check runs in a worker process."""
    client = await connect("doc")
    await _typed(client, "x" * 64 * 1024)
    elsewhere: Doc = Doc()
    _update_appending(elsewhere, "text", "first")
    depends = _update_appending(elsewhere, "text", " second")
    author: Doc = Doc()
    author.apply_update(client.doc.get_update())
    fits = _update_appending(author, "text", "!")
    octets = {"Content-Type": "application/octet-stream"}
    async with api(server) as http:
        pending = await http.post("/doc/updates", content=depends, headers=octets)
        applied = await http.post("/doc/updates", content=fits, headers=octets)
    assert pending.status_code == 409, pending.text
    assert applied.status_code == 200, applied.text
    await eventually(lambda: str(client.text).endswith("x!"))
    assert server.runtime.history.compute.jobs_by_pid.keys() - {os.getpid()}, "in a worker"


@pytest.fixture
def small_limits(settings: Settings) -> Settings:
    return settings.replace(edit_max_body_bytes=2000, max_document_bytes=5000)


async def test_bodies_and_documents_past_their_limits_get_413(connect, small_limits):
    async with run_server(small_limits) as server:
        async with api(server) as http:
            created = await http.post(
                f"{server.http_url}/api/documents", json={"name": "doc", "content": "x" * 1500}
            )
            assert created.status_code == 201, created.text
            body_too_big = await http.put(
                "/doc/content", content="y" * 3000, headers={"Content-Type": "text/plain"}
            )
            assert body_too_big.status_code == 413
            assert "COLLAB_EDIT_MAX_BODY_BYTES" in body_too_big.json()["detail"]
            for _ in range(3):
                grown = await http.patch("/doc/text/content", json=[{"insert": "z" * 1500}])
                if grown.status_code != 200:
                    break
            assert grown.status_code == 413, grown.text
            assert "COLLAB_MAX_DOCUMENT_BYTES" in grown.json()["detail"]


async def test_replacing_content_keeps_a_remote_cursor_in_place(connect, server):
    client = await connect("doc")
    await _typed(client, "alpha beta gamma")
    cursor = client.text.sticky_index(len("alpha beta "), Assoc.AFTER)  # before "gamma"
    async with api(server) as http:
        response = await http.put(
            "/doc/content",
            params={"root": "text"},
            content="alpha BETA gamma delta",
            headers={"Content-Type": "text/markdown"},
        )
        assert response.status_code == 200, response.text
        unchanged = await http.put(
            "/doc/content",
            params={"root": "text"},
            json={"content": "alpha BETA gamma delta"},
        )
    assert unchanged.json()["changed"] is False and unchanged.json()["seq"] is None
    await eventually(lambda: str(client.text) == "alpha BETA gamma delta")
    assert cursor.get_index() == len("alpha BETA ")


async def test_copy_makes_a_new_document_from_now_or_a_version(connect, server):
    client = await connect("doc")
    await _typed(client, "version one")
    async with api(server) as http:
        saved = await http.post("/doc/snapshots", json={"label": "v1"})
        await _typed(client, ", then two")
        now = await http.post("/doc/copy", json={"to": "copy-now"})
        then = await http.post("/doc/copy", json={"to": "copy-then", "version": saved.json()["id"]})
        taken = await http.post("/doc/copy", json={"to": "copy-now"})
        no_source = await http.post("/nope/copy", json={"to": "other"})
        assert now.status_code == 201 and then.status_code == 201, (now.text, then.text)
        assert taken.status_code == 409
        assert no_source.status_code == 404
        copied_now = (await http.get("/copy-now")).json()["content"]
        copied_then = (await http.get("/copy-then")).json()["content"]
    assert copied_now == {"text": "version one, then two"}
    assert copied_then == {"text": "version one"}
    reader = await connect("copy-now")
    assert str(reader.text) == "version one, then two"


@pytest.mark.parametrize("file_format", ["markdown", "text"])
async def test_import_then_export_round_trips_the_text_exactly(server, file_format):
    async with api(server) as http:
        created = await http.post(
            f"{server.http_url}/api/documents",
            json={"name": "notes", "content": TRICKY_MARKDOWN, "format": file_format},
        )
        assert created.status_code == 201, created.text
        again = await http.post(
            f"{server.http_url}/api/documents", json={"name": "notes", "content": "other"}
        )
        exported = await http.get("/notes/export", params={"format": file_format})
        as_json = await http.get("/notes/export", params={"format": "json"})
    assert again.status_code == 409
    assert exported.status_code == 200
    assert exported.content.decode("utf-8") == TRICKY_MARKDOWN
    extension = "md" if file_format == "markdown" else "txt"
    assert exported.headers["content-disposition"] == f'attachment; filename="notes.{extension}"'
    assert as_json.json() == {"name": "notes", "content": {"content": TRICKY_MARKDOWN}}


async def test_html_export_is_rendered_like_the_preview_and_sanitised(server):
    markdown = (
        "# Plan\n\n| a | b |\n|:-:|---|\n| 1 | 2 |\n\n- [x] done\n\n"
        '<script>alert(1)</script><img src="x.png" onerror="alert(2)">\n\n'
        '<p style="color:red" onclick="steal()">styled</p>\n\n'
        "[link](https://example.com) <form action=/x><input></form>\n\n"
        "bare https://bare.example and javascript:alert(3)\n"
    )
    async with api(server) as http:
        await http.post(
            f"{server.http_url}/api/documents", json={"name": "my:doc", "content": markdown}
        )
        response = await http.get("/my:doc/export", params={"format": "html"})
    html = response.text
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["content-disposition"] == 'attachment; filename="my_doc.html"'
    assert "<h1>Plan</h1>" in html and '<th align="center">a</th>' in html
    assert "☑ done" in html
    assert '<a href="https://example.com" target="_blank" rel="noopener noreferrer">' in html
    assert '<a href="https://bare.example" target="_blank" rel="noopener noreferrer">' in html
    assert "and javascript:alert(3)</p>" in html  # text, never a link
    for forbidden in ("<script", "alert(1)", "onerror", "onclick", "style=", "<form", "<input"):
        assert forbidden not in html
    assert '<img src="x.png">' in html


async def test_tokens_decide_who_may_edit_and_the_author_is_their_subject(settings, caplog):
    caplog.set_level(logging.INFO, logger="collab.rooms.edit_authors")
    async with run_server(settings.replace(auth_secret=SECRET)) as server:
        writer, reader = token("doc*", sub="importer"), token("doc*", role="read")
        async with api(server, writer) as http:
            created = await http.post(
                f"{server.http_url}/api/documents", json={"name": "doc", "content": "hello"}
            )
            assert created.status_code == 201, created.text
            outside = await http.post(
                f"{server.http_url}/api/documents", json={"name": "other", "content": "x"}
            )
            copy_outside = await http.post("/doc/copy", json={"to": "other"})
        async with api(server, reader) as http:
            refused = [
                await http.post(
                    f"{server.http_url}/api/documents", json={"name": "doc2", "content": "x"}
                ),
                await http.post(
                    "/doc/updates",
                    content=b"\x00\x00",
                    headers={"Content-Type": "application/octet-stream"},
                ),
                await http.patch("/doc/text/content", json=[{"insert": "x"}]),
                await http.put("/doc/content", content="x"),
                await http.post("/doc/copy", json={"to": "doc3"}),
            ]
            exported = await http.get("/doc/export")
        async with api(server) as http:
            anonymous = await http.patch("/doc/text/content", json=[{"insert": "x"}])
    assert outside.status_code == 403 and copy_outside.status_code == 403
    assert [r.status_code for r in refused] == [403] * 5
    assert exported.status_code == 200 and exported.text == "hello"
    assert anonymous.status_code == 401
    assert any("server edit by importer" in r.getMessage() for r in caplog.records)


async def test_edits_past_the_rate_are_refused_with_retry_after(settings):
    async with run_server(settings.replace(edit_rate_per_s=0.5, edit_rate_burst=2)) as server:
        async with api(server) as http:
            await http.post(
                f"{server.http_url}/api/documents", json={"name": "doc", "content": "x"}
            )
            second = await http.patch("/doc/text/text", json=[{"insert": "y"}])
            third = await http.patch("/doc/text/text", json=[{"insert": "z"}])
    assert second.status_code == 200
    assert third.status_code == 429 and int(third.headers["Retry-After"]) >= 1


async def test_the_openapi_schema_documents_every_editing_route(server):
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        schema = (await http.get("/openapi.json")).json()
    paths = schema["paths"]
    update = paths["/api/documents/{name}/updates"]["post"]
    assert "application/octet-stream" in update["requestBody"]["content"]
    patch = paths["/api/documents/{name}/text/{root}"]["patch"]
    assert patch["requestBody"]["content"]["application/json"]["examples"]
    assert {"412", "422", "429"} <= set(patch["responses"])
    assert "post" in paths["/api/documents"] and "post" in paths["/api/documents/{name}/copy"]
    exported = paths["/api/documents/{name}/export"]["get"]["responses"]["200"]
    assert "text/html" in exported["content"]
    references = set(re.findall(r'"\$ref": "([^"]+)"', json.dumps(schema)))
    assert references <= {f"#/components/schemas/{n}" for n in schema["components"]["schemas"]}


async def test_collab_export_and_import_on_the_command_line(settings, tmp_path: Path):
    source = tmp_path / "in.md"
    source.write_bytes(TRICKY_MARKDOWN.encode("utf-8"))
    env = {"COLLAB_DATABASE_URL": settings.database_url}
    # No server on the database: straight to it.
    code, _out, err = await run_collab("import", "offline", str(source), env=env)
    assert code == 0, err
    code, out, err = await run_collab("export", "offline", "--format", "text", env=env)
    assert code == 0, err
    assert out == TRICKY_MARKDOWN
    # A server on it (found through its lease): through its API, so a connected
    # editor sees the import at once.
    async with server_process(tmp_path) as server:
        assert server.database_url == settings.database_url
        client = await YClient(server.ws_url("live")).connect()
        code, _out, err = await run_collab("import", "live", str(source), "--root", "text", env=env)
        assert code == 0, err
        assert "going through its API" in err
        await eventually(lambda: str(client.text) == TRICKY_MARKDOWN)
        target = tmp_path / "out.md"
        code, _out, err = await run_collab(
            "export", "live", "--root", "text", "--output", str(target), env=env
        )
        assert code == 0, err
        assert target.read_bytes().decode("utf-8") == TRICKY_MARKDOWN
        code, _out, err = await run_collab("import", "live", str(source), env=env)
        assert code == 1 and "409" in err
        await client.close()


async def test_an_answered_edit_survives_kill_9(tmp_path: Path):
    expected = "start"
    async with server_process(tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
            created = await http.post("/api/documents", json={"name": "doc", "content": "start"})
            assert created.status_code == 201, created.text
            for i in range(20):
                piece = f"<{i}>"
                answer = await http.patch(
                    "/api/documents/doc/text/content",
                    json=[{"retain": len(expected)}, {"insert": piece}],
                )
                assert answer.status_code == 200, answer.text
                expected += piece
        server.process.kill()  # type: ignore[union-attr]
        await server.process.wait()  # type: ignore[union-attr]
        await server.start()
        async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
            exported = await http.get("/api/documents/doc/export", params={"format": "text"})
    assert exported.text == expected
