"""Tokens, roles and origins against the real server: real WebSockets (pycrdt and the
npm y-websocket client), real HTTP, real server processes for start-up and logs."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import jwt
import pytest
import websockets
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pycrdt import Text

from collab.auth.issue import issue_token
from collab.auth.policy import Role
from collab.config import Settings
from collab.errors import CloseCode
from collab.protocol.codec import AuthMessage, decode_message
from tests.support.nodeclient import require_node
from tests.support.server import (
    RunningServer,
    free_port,
    metric_value,
    run_collab,
    run_server,
    server_process,
)
from tests.support.waiting import TIMEOUT_S, eventually
from tests.support.yclient import YClient

SECRET = "integration-test-secret-with-32-bytes+"


def token(*documents: str, role: str = "write", ttl_s: int = 600, **extra: Any) -> str:
    claims = {"exp": int(time.time()) + ttl_s, "docs": list(documents), "role": role, **extra}
    return jwt.encode(claims, SECRET, algorithm="HS256")


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Every server in this module requires tokens signed with SECRET."""
    return settings.replace(auth_secret=SECRET)


Connect = Callable[..., Awaitable[YClient]]


@pytest.fixture
async def join(server: RunningServer) -> AsyncIterator[Connect]:
    """A synced pycrdt client on `document` presenting `token` as ?token=."""
    clients: list[YClient] = []

    async def _join(document: str, token: str, **kwargs: Any) -> YClient:
        client = YClient(f"{server.ws_url(document)}?token={token}")
        clients.append(client)
        return await client.connect(**kwargs)

    yield _join
    for client in clients:
        await client.close()


async def refusal(url: str, **kwargs: Any) -> tuple[int | None, str | None]:
    """Open a WebSocket and wait for the server to close it: (code, reason). The one
    message before the close is y-protocols' permission-denied with the same reason."""
    async with websockets.connect(url, **kwargs) as ws:
        message = await asyncio.wait_for(ws.recv(), TIMEOUT_S)
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT_S)
    assert isinstance(message, bytes)
    denied = decode_message(message)
    assert isinstance(denied, AuthMessage) and denied.payload[0] == 0  # permission denied
    assert denied.payload[2:].decode() == ws.close_reason
    return ws.close_code, ws.close_reason


def http(server: RunningServer, token: str | None = None, **headers: str) -> httpx.AsyncClient:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.AsyncClient(base_url=server.http_url, headers=headers, timeout=TIMEOUT_S)


async def echoed(client: YClient, text: str) -> None:
    """Append `text` and wait until the server has committed and echoed it."""
    before = client.received_updates
    client.text.insert(len(client.text), text)
    await eventually(lambda: client.received_updates > before, what=f"echo of {text!r}")


# -- WebSocket: authentication ------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("", "a token is required"),
        ("?token=", "a token is required"),
        ("?token=garbage", "malformed token"),
        ("?token=" + jwt.encode({"exp": 2**40, "docs": ["*"], "role": "admin"}, "x" * 40), "bad"),
        ("?token=" + token("doc", ttl_s=-120), "token expired"),
        ("?token=" + jwt.encode({"exp": 2**40, "role": "admin"}, SECRET), "'docs'"),
    ],
    ids=["no token", "empty", "malformed", "bad signature", "expired", "no docs claim"],
)
async def test_a_websocket_without_a_good_token_is_closed_with_4401(server, query, reason):
    code, text = await refusal(server.ws_url("doc") + query)
    assert code == 4401
    assert reason in (text or "")
    assert "doc" not in server.runtime.registry.rooms, "nothing was loaded for it"


async def test_a_token_for_another_document_is_closed_with_4403(server):
    code, reason = await refusal(server.ws_url("secret-plans") + "?token=" + token("doc"))
    assert code == 4403 and "secret-plans" in (reason or "")


async def test_prefix_scopes_cover_only_documents_under_the_prefix(server, join):
    team = token("team-a:*", "lobby")
    assert (await join("team-a:notes", team)).synced.is_set()
    assert (await join("lobby", team)).synced.is_set()
    for outside in ("team-a", "team-b:notes", "lobby2", "team-a-notes"):
        code, _ = await refusal(f"{server.ws_url(outside)}?token={team}")
        assert code == 4403, outside
    everything = token("*", role="read")
    assert (await join("team-b:notes", everything)).synced.is_set()


async def test_write_tokens_edit_and_see_each_others_edits(server, join):
    alice = await join("doc", token("doc", sub="alice"))
    # A non-browser client may send the token as a header instead.
    bob = YClient(server.ws_url("doc"))
    await bob.connect(additional_headers={"Authorization": f"Bearer {token('doc', sub='bob')}"})
    try:
        alice.text.insert(0, "from alice; ")
        await eventually(lambda: "from alice" in str(bob.text))
        bob.text.insert(len(bob.text), "from bob")
        await eventually(lambda: str(alice.text) == "from alice; from bob")
    finally:
        await bob.close()


# -- WebSocket: the read role -------------------------------------------------------


async def test_a_read_connection_gets_document_and_presence_and_its_edit_is_refused(server, join):
    writer = await join("doc", token("doc"))
    await echoed(writer, "hello")
    await writer.set_presence({"user": {"name": "writer"}})
    reader = await join("doc", token("doc", role="read"))
    assert str(reader.text) == "hello"

    # Live edits and presence reach it; its own presence reaches the others.
    await echoed(writer, " live")
    await eventually(lambda: str(reader.text) == "hello live")
    await eventually(lambda: {"user": {"name": "writer"}} in reader.presence_of_others().values())
    await reader.set_presence({"user": {"name": "viewer"}})
    await eventually(lambda: {"user": {"name": "viewer"}} in writer.presence_of_others().values())
    room = server.runtime.registry.rooms["doc"]
    assert _dropped_step2s(server) >= 1, "its automatic sync step 2 was dropped"

    reader.text.insert(0, "sneaky ")  # the client sends this as an update
    assert await reader.wait_closed() == 4403
    assert "read-only" in (reader.close_reason or "")
    # Ordering barrier: had the edit been relayed, it would reach the writer before
    # the echo of the writer's next edit.
    await echoed(writer, "!")
    assert str(writer.text) == "hello live!"
    assert "sneaky" not in str(room.doc.get("text", type=Text))
    await eventually(lambda: writer.presence_of_others() == {}, what="the reader's cursor left")
    async with http(server, token("doc", role="read")) as api:
        assert (await api.get("/api/documents/doc")).json()["content"]["text"] == "hello live!"


async def test_a_read_connections_catch_up_reply_is_dropped_and_it_stays_connected(server, join):
    writer = await join("doc", token("doc"))
    await echoed(writer, "server copy")
    offline = YClient(f"{server.ws_url('doc')}?token={token('doc', role='read')}")
    offline.text.insert(0, "offline edit; ")  # made before connecting: sent in its step 2
    await offline.connect()
    try:
        await eventually(lambda: _dropped_step2s(server) >= 1)
        await echoed(writer, " + more")  # ordering barrier, as above
        assert str(writer.text) == "server copy + more"
        await eventually(lambda: "+ more" in str(offline.text))
        assert offline.close_code is None, "a catch-up reply is not an edit: still connected"
    finally:
        await offline.close()


# -- origins ------------------------------------------------------------------------------


async def test_a_page_from_another_origin_is_refused_and_our_own_pages_are_not(server, join):
    good = token("doc")
    url = f"{server.ws_url('doc')}?token={good}"
    code, reason = await refusal(url, origin="https://evil.example")
    assert (code, reason) == (4403, "origin not allowed")
    same = await join("doc", good, origin=f"http://127.0.0.1:{server.port}")
    assert same.synced.is_set()
    async with http(server, good, Origin="https://evil.example") as api:
        response = await api.get("/api/documents")
    assert response.status_code == 403 and response.json() == {"detail": "origin not allowed"}
    assert "access-control-allow-origin" not in response.headers


async def test_configured_origins_get_cors_and_websocket_access(settings):
    app_origin = "http://localhost:5173"
    async with run_server(settings.replace(allowed_origins=app_origin)) as server:
        good = token("doc")
        client = YClient(f"{server.ws_url('doc')}?token={good}")
        await client.connect(origin=app_origin)
        await client.close()
        async with http(server, Origin=app_origin) as api:
            preflight = await api.options(
                "/api/documents/doc",
                headers={
                    "Access-Control-Request-Method": "DELETE",
                    "Access-Control-Request-Headers": "authorization",
                },
            )
            assert preflight.status_code == 200
            assert preflight.headers["access-control-allow-origin"] == app_origin
            assert "DELETE" in preflight.headers["access-control-allow-methods"]
            listing = await api.get("/api/documents", headers={"Authorization": f"Bearer {good}"})
            assert listing.status_code == 200
            assert listing.headers["access-control-allow-origin"] == app_origin
        code, _ = await refusal(f"{server.ws_url('doc')}?token={good}", origin="https://x.example")
        assert code == 4403


async def test_an_open_server_needs_no_token_but_still_checks_origin(settings):
    async with run_server(settings.replace(auth_secret="")) as server:
        client = YClient(server.ws_url("doc"))
        await client.connect()
        await client.close()
        async with http(server) as api:
            access = (await api.get("/api/access")).json()
            assert access == {
                "auth_required": False,
                "role": "admin",
                "documents": ["*"],
                "subject": None,
                "expires_at": None,
            }
            assert (await api.delete("/api/documents/doc")).status_code in (204, 404)
        code, _ = await refusal(server.ws_url("doc"), origin="https://evil.example")
        assert code == 4403


# -- REST -----------------------------------------------------------------------------------


async def test_rest_without_a_good_token_is_a_401_with_www_authenticate(server):
    async with http(server) as api:
        for method, path in [
            ("GET", "/api/documents"),
            ("GET", "/api/documents/doc"),
            ("DELETE", "/api/documents/doc"),
            ("GET", "/api/documents/doc/snapshots"),
            ("POST", "/api/documents/doc/snapshots/1/restore"),
            ("GET", "/api/access"),
        ]:
            response = await api.request(method, path)
            assert response.status_code == 401, (method, path)
            assert response.headers["www-authenticate"] == 'Bearer realm="collab"'
            assert response.json() == {"detail": "a token is required"}
        expired = await api.get(
            "/api/documents", headers={"Authorization": f"Bearer {token('doc', ttl_s=-120)}"}
        )
        assert expired.status_code == 401 and expired.json() == {"detail": "token expired"}
        assert 'error="invalid_token"' in expired.headers["www-authenticate"]
        basic = await api.get("/api/documents", headers={"Authorization": "Basic dXNlcjpwdw=="})
        assert basic.status_code == 401
        assert (await api.get("/healthz")).status_code == 200, "health checks stay open"


async def test_rest_roles_read_write_admin(server, join):
    writer = await join("doc", token("doc"))
    await echoed(writer, "v1")
    reader_api = http(server, token("doc", role="read", sub="rita"))
    writer_api = http(server, token("doc", role="write", sub="walt"))
    admin_api = http(server, token("doc", role="admin", sub="ada"))
    async with reader_api, writer_api, admin_api:
        assert (await reader_api.get("/api/documents/doc")).json()["content"] == {"text": "v1"}
        refused = await reader_api.post("/api/documents/doc/snapshots", json={"label": "x"})
        assert refused.status_code == 403
        assert refused.json() == {"detail": "needs the write role; the token grants read"}

        saved = await writer_api.post("/api/documents/doc/snapshots", json={"label": "first"})
        assert saved.status_code == 201 and saved.json()["author"] == "walt", "sub is the author"
        named = await writer_api.post(
            "/api/documents/doc/snapshots", json={"label": "2nd", "author": "Walter W."}
        )
        assert named.json()["author"] == "walt", "with tokens, the author is the token's sub"
        version = saved.json()["id"]
        for path in (
            "/api/documents/doc/snapshots",
            f"/api/documents/doc/snapshots/{version}",
            f"/api/documents/doc/snapshots/{version}/update",
            f"/api/documents/doc/snapshots/{version}/diff",
        ):
            assert (await reader_api.get(path)).status_code == 200, path

        await echoed(writer, " v2")
        restore = f"/api/documents/doc/snapshots/{version}/restore"
        for api in (reader_api, writer_api):
            assert (await api.post(restore)).status_code == 403
            assert (await api.delete("/api/documents/doc")).status_code == 403
        assert (await admin_api.post(restore)).status_code == 200
        await eventually(lambda: str(writer.text) == "v1")
        assert (await admin_api.delete("/api/documents/doc")).status_code == 204
    assert await writer.wait_closed() == 4410


async def test_rest_scope_listing_and_unknown_documents(server, join):
    for name in ("team-a:one", "team-a:two", "team-b:one"):
        await echoed(await join(name, token("*")), name)
    team_a = token("team-a:*", role="read", sub="ann")
    async with http(server, team_a) as api:
        listed = [entry["name"] for entry in (await api.get("/api/documents")).json()]
        assert listed == ["team-a:one", "team-a:two"]
        assert (await api.get("/api/documents/team-b:one")).status_code == 403
        unknown = await api.get("/api/documents/team-b:nothing")
        assert unknown.status_code == 403, "out of scope: not even whether it exists"
        assert (await api.get("/api/documents/team-a:nothing")).status_code == 404
        access = (await api.get("/api/access")).json()
        assert access["auth_required"] is True
        assert (access["role"], access["documents"], access["subject"]) == (
            "read",
            ["team-a:*"],
            "ann",
        )
        assert access["expires_at"]


async def test_with_tokens_versions_and_restores_are_recorded_under_the_tokens_subject(
    server, join
):
    writer = await join("doc", token("doc"))
    await echoed(writer, "v1")
    walt = http(server, token("doc", sub="walt"))
    ada = http(server, token("doc", role="admin", sub="ada"))
    nobody = http(server, token("doc", role="admin"))  # a token without `sub`
    async with walt, ada, nobody:
        saved = await walt.post(
            "/api/documents/doc/snapshots", json={"label": "v1", "author": "Ada Lovelace"}
        )
        assert saved.status_code == 201
        assert saved.json()["author"] == "walt", "a name the client chose is not recorded"
        anonymous = await nobody.post(
            "/api/documents/doc/snapshots", json={"label": "anon", "author": "Ada Lovelace"}
        )
        assert anonymous.json()["author"] is None, "no sub: nobody, not the body's name"

        await echoed(writer, " v2")
        restored = await ada.post(f"/api/documents/doc/snapshots/{saved.json()['id']}/restore")
        assert restored.status_code == 200
        await eventually(lambda: str(writer.text) == "v1")
        pre_restore = restored.json()["pre_restore_snapshot_id"]
        version = (await walt.get(f"/api/documents/doc/snapshots/{pre_restore}")).json()
        assert (version["snapshot"]["kind"], version["snapshot"]["author"]) == (
            "pre-restore",
            "ada",
        ), "the pre-restore version records who restored"


# -- live permissions: expiry and revocation --------------------------------------------------


ADMIN = {"role": "admin", "sub": "root"}


async def test_a_connection_is_closed_with_4001_when_its_token_expires(settings):
    """The token is checked while the connection lives, not only at connect: past its
    `exp` (plus the leeway, 0 here) it is closed with 4001, which y-websocket retries;
    the retry with the same token is refused for good (4401), a fresh token gets in."""
    async with run_server(settings.replace(auth_leeway_s=0.0)) as server:
        short = token("doc", ttl_s=4)
        client = YClient(f"{server.ws_url('doc')}?token={short}")
        await client.connect()
        try:
            await client.set_presence({"user": {"name": "busy"}})  # awareness keeps it alive
            assert await client.wait_closed(TIMEOUT_S) == CloseCode.TOKEN_EXPIRED == 4001
            assert client.close_reason == "token expired"
        finally:
            await client.close()
        assert await refusal(f"{server.ws_url('doc')}?token={short}") == (4401, "token expired")
        fresh = YClient(f"{server.ws_url('doc')}?token={token('doc')}")
        await fresh.connect()
        await fresh.close()


async def test_revoking_a_token_by_jti_closes_its_connections_at_once_and_refuses_it(server, join):
    revoked = token("doc", "other", jti="t-revoked", sub="ada")
    kept = token("doc", jti="t-kept", sub="ada")
    first, second = await join("doc", revoked), await join("other", revoked)
    survivor = await join("doc", kept)
    async with http(server, token("*", **ADMIN)) as admin, http(server, revoked) as holder:
        assert (await holder.get("/api/documents/doc")).status_code in (200, 404)
        response = await admin.post(
            "/api/tokens/revocations", json={"jti": "t-revoked", "reason": "laptop stolen"}
        )
        assert response.status_code == 201, response.text
        body = response.json()
        assert (body["kind"], body["value"], body["revoked_by"], body["until"]) == (
            "jti",
            "t-revoked",
            "root",
            None,
        )
        for client in (first, second):
            assert await client.wait_closed() == 4401
            assert client.close_reason == "token revoked"
        await echoed(survivor, "still here")  # another token of the same person
        assert survivor.close_code is None

        assert await refusal(f"{server.ws_url('doc')}?token={revoked}") == (4401, "token revoked")
        refused = await holder.get("/api/documents/doc")
        assert (refused.status_code, refused.json()) == (401, {"detail": "token revoked"})
        listed = (await admin.get("/api/tokens/revocations")).json()["revocations"]
        assert [(r["kind"], r["value"], r["reason"]) for r in listed] == [
            ("jti", "t-revoked", "laptop stolen")
        ]
    assert (
        metric_value(server.runtime.metrics, "collab_auth_failures_total", reason="revoked") >= 3
    ), "two connections closed, then refusals counted"


async def test_revoking_a_subject_closes_its_tokens_and_a_newer_token_gets_back_in(server, join):
    ada_write, ada_read = token("doc", sub="ada"), token("*", role="read", sub="ada")
    ada_clients = [await join("doc", ada_write), await join("notes", ada_read)]
    bob = await join("doc", token("doc", sub="bob"))
    async with http(server, token("*", **ADMIN)) as admin:
        response = await admin.post("/api/tokens/revocations", json={"subject": "ada"})
        assert response.status_code == 201, response.text
    for client in ada_clients:
        assert await client.wait_closed() == 4401
    await echoed(bob, "bob stays")
    for old in (ada_write, ada_read):
        assert await refusal(f"{server.ws_url('doc')}?token={old}") == (4401, "token revoked")
    # A token issued after the revocation (its `iat` is later) is a new decision.
    newer = token("doc", sub="ada", iat=int(time.time()) + 2)
    assert (await join("doc", newer)).synced.is_set()


async def test_revoking_needs_an_admin_token_for_every_document(server):
    requests = [
        (None, {"jti": "x"}, 401),
        (token("*", role="write"), {"jti": "x"}, 403),
        (token("team-a:*", role="admin"), {"jti": "x"}, 403),
        (token("*", role="admin"), {"jti": "x", "subject": "y"}, 422),
        (token("*", role="admin"), {}, 422),
        (token("*", role="admin"), {"jti": "x", "until": 1}, 422),  # in the past
    ]
    for bearer, body, status in requests:
        async with http(server, bearer) as api:
            assert (await api.post("/api/tokens/revocations", json=body)).status_code == status
            if status != 422:
                assert (await api.get("/api/tokens/revocations")).status_code == status
    async with http(server, token("*", role="admin")) as api:
        assert (await api.get("/api/tokens/revocations")).json() == {"revocations": []}


async def test_a_revocation_with_until_lapses(server, join):
    async with http(server, token("*", **ADMIN)) as admin:
        until = time.time() + 5
        response = await admin.post(
            "/api/tokens/revocations", json={"jti": "t-pause", "until": until}
        )
        assert response.status_code == 201
    paused = token("doc", jti="t-pause")
    assert await refusal(f"{server.ws_url('doc')}?token={paused}") == (4401, "token revoked")

    async def admitted() -> bool:
        """The first message says it: sync step 1, or permission denied."""
        async with websockets.connect(f"{server.ws_url('doc')}?token={paused}") as ws:
            first = decode_message(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        return not isinstance(first, AuthMessage)

    await eventually(admitted, what="the revocation lapsed")


async def test_token_revoke_and_revocations_commands_through_the_server(server, join):
    victim = await join("doc", token("doc", jti="t-cli", sub="eve"))
    env = {"COLLAB_AUTH_SECRET": SECRET, "COLLAB_TOKEN": ""}  # the CLI mints its admin token
    code, out, err = await run_collab(
        "token", "revoke", "--jti", "t-cli", "--reason", "left", "--server", server.http_url,
        env=env,
    )  # fmt: skip
    assert code == 0, err
    assert "revoked jti 't-cli' for good by collab-cli (left)" in out
    assert await victim.wait_closed() == 4401
    code, out, err = await run_collab(
        "token", "revocations", "--json", "--server", server.http_url, env=env
    )
    assert code == 0, err
    [entry] = json.loads(out)["revocations"]
    assert (entry["kind"], entry["value"], entry["revoked_by"]) == ("jti", "t-cli", "collab-cli")
    code, _, err = await run_collab(
        "token", "revoke", "--subject", "eve", "--server", server.http_url,
        env={"COLLAB_AUTH_SECRET": "", "COLLAB_TOKEN": token("*", role="write")},
    )  # fmt: skip
    assert code == 1 and "403" in err


async def test_token_revoke_without_a_server_writes_the_table_the_server_reads_at_start(
    settings, tmp_path
):
    database = f"sqlite+aiosqlite:///{tmp_path / 'offline.db'}"
    code, out, err = await run_collab(
        "token", "revoke", "--subject", "mallory", "--until", "1h", "--database", database,
        env={"COLLAB_AUTH_SECRET": SECRET},
    )  # fmt: skip
    assert code == 0, err
    assert "revoked subject 'mallory' until" in out and "by command line" in out
    async with run_server(settings.replace(database_url=database)) as server:
        old = token("doc", sub="mallory", iat=int(time.time()) - 60)
        assert await refusal(f"{server.ws_url('doc')}?token={old}") == (4401, "token revoked")
    code, _, err = await run_collab(
        "token", "revoke", "--jti", "x", "--until", "yesterday", "--database", database
    )
    assert code == 1 and "bad --until" in err


# -- document names -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".", "..", "..."])
async def test_a_name_made_only_of_dots_is_refused_before_any_token_check(server, name):
    """Browsers and proxies resolve `.` and `..` into other paths: such a document
    could be made by one client and never reached by another."""
    async with websockets.connect(f"{server.ws_url(name)}?token={token('*')}") as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT_S)
    assert ws.close_code == 4404 and "not only dots" in (ws.close_reason or "")
    assert name not in server.runtime.registry.rooms


async def test_rest_refuses_a_name_made_only_of_dots(server):
    async with http(server, token("*", role="admin")) as api:
        for method, path in [
            ("GET", "/api/documents/..."),
            ("DELETE", "/api/documents/..."),
            ("POST", "/api/documents/.../snapshots"),
        ]:
            response = await api.request(method, path, json={"label": "x"})
            assert response.status_code == 422, (method, path)
        assert (await api.get("/api/documents/.x")).status_code == 404, "dots and more: a name"


# -- public keys ----------------------------------------------------------------------------


async def test_es256_tokens_from_a_public_key(settings):
    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    es_settings = settings.replace(auth_secret="", auth_public_key=public_pem)
    async with run_server(es_settings) as server:
        signed = issue_token(private, documents=["doc"], role=Role.WRITE, ttl_s=60, subject="es")
        client = YClient(f"{server.ws_url('doc')}?token={signed}")
        await client.connect()
        await echoed(client, "signed with ES256")
        await client.close()
        async with http(server, signed) as api:
            assert (await api.get("/api/documents/doc")).json()["content"]["text"] == (
                "signed with ES256"
            )
        # A secret-signed token means nothing to a public-key server.
        code, reason = await refusal(f"{server.ws_url('doc')}?token={token('doc')}")
        assert code == 4401 and "algorithm" in (reason or "")


# -- the npm y-websocket client ---------------------------------------------------------------


@pytest.mark.node
async def test_node_read_token_sees_the_document_but_its_edit_is_never_applied(
    server, join, node_client
):
    require_node()
    viewer_token = token("shared", role="read")
    writer = await join("shared", token("shared"))
    await echoed(writer, "hello")
    await writer.set_presence({"user": {"name": "writer"}})

    viewer = await node_client(
        "shared",
        token=viewer_token,
        presence="viewer",
        expect_contains=["hello", "live"],
        expect_presence=["writer"],
        hold_stdin=True,
    )
    await eventually(lambda: {"user": {"name": "viewer"}} in writer.presence_of_others().values())
    await echoed(writer, " live")
    assert (await viewer.result())["text"] == "hello live"
    assert _dropped_step2s(server) >= 1, "y-websocket's step 2 was dropped"

    # A read client that types anyway: closed with 4403, which y-websocket treats as
    # final (no reconnect loop), and its edit never reaches anyone.
    editor = await node_client("shared", token=viewer_token, insert="SNEAKY", expect_closed=True)
    assert "SNEAKY" in (await editor.result())["text"], "it was only ever local"
    assert (await editor.result())["closed"]["code"] == 4403
    assert await asyncio.wait_for(editor.process.wait(), TIMEOUT_S * 2) == 0
    await echoed(writer, "!")
    assert str(writer.text) == "hello live!"

    # A write token works from Node too.
    author = await node_client(
        "shared", token=token("shared"), insert=" +node", expect_contains=["+node"]
    )
    await author.run()
    await eventually(lambda: str(writer.text) == "hello live! +node")
    await viewer.finish()  # it was never disconnected (nothing on its stderr)


# -- start-up, logs and the command line ------------------------------------------------------


async def test_an_open_server_refuses_a_public_interface_unless_told(tmp_path):
    database = f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"
    port = str(free_port())
    code, _, err = await run_collab(
        "serve", "--host", "0.0.0.0", "--port", port, "--database", database
    )
    assert code == 2
    assert "--allow-anonymous" in err and "COLLAB_AUTH_SECRET" in err
    code, _, err = await run_collab(
        "serve", "--port", port, "--database", database, env={"COLLAB_AUTH_SECRET": "short"}
    )
    assert code == 2 and "at least 32" in err

    async with server_process(tmp_path, args=["--host", "0.0.0.0", "--allow-anonymous"]) as proc:
        log = await eventually(
            lambda: "running OPEN" in proc.log_path.read_text() and proc.log_path.read_text()
        )
        assert "anyone who can reach" in log


async def test_tokens_never_reach_the_logs_and_refusals_are_logged_with_a_reason(tmp_path):
    good, expired = token("doc"), token("doc", ttl_s=-120)
    async with server_process(tmp_path, env={"COLLAB_AUTH_SECRET": SECRET}) as proc:
        client = YClient(f"{proc.ws_url('doc')}?token={good}")
        await client.connect()
        await client.close()
        assert (await refusal(f"{proc.ws_url('doc')}?token={expired}"))[0] == 4401
        assert (await refusal(f"{proc.ws_url('other')}?token={good}"))[0] == 4403
        async with httpx.AsyncClient() as api:
            response = await api.get(
                f"http://127.0.0.1:{proc.port}/api/documents?token={good}",
                headers={"Authorization": f"Bearer {expired}"},
            )
            assert response.status_code == 401

        def logged() -> str:
            text = proc.log_path.read_text()
            assert "(expired)" in text and "(document_not_in_scope)" in text
            assert "GET /api/documents" in text
            return text

        log = await eventually(logged)
    assert "tokens required (HS256)" in log
    assert good not in log and expired not in log and SECRET not in log
    assert "token=[redacted]" in log


async def test_token_issue_prints_a_token_the_server_accepts(server):
    env = {"COLLAB_AUTH_SECRET": SECRET}
    code, out, err = await run_collab(
        "token", "issue", "--doc", "doc", "--doc", "team:*", "--role", "write", "--ttl", "1h",
        "--sub", "ada", env=env,
    )  # fmt: skip
    assert code == 0, err
    issued = out.strip()
    claims = jwt.decode(issued, SECRET, algorithms=["HS256"])
    assert (claims["docs"], claims["role"], claims["sub"]) == (["doc", "team:*"], "write", "ada")
    assert 3590 <= claims["exp"] - time.time() <= 3600
    client = YClient(f"{server.ws_url('team:x')}?token={issued}")
    await client.connect()
    await client.close()

    for args, message in [
        (["--ttl", "soon"], "bad TTL"),
        (["--doc", "a b"], "not a document name"),
    ]:
        code, _, err = await run_collab(
            "token", "issue", "--doc", "doc", "--role", "read", *args, env=env
        )
        assert code == 2 and message in err
    code, _, err = await run_collab(
        "token", "issue", "--doc", "doc", "--role", "read", env={"COLLAB_AUTH_SECRET": ""}
    )
    assert code == 2 and "no signing key" in err


async def test_snapshots_cli_sends_its_token_to_a_server_that_needs_one(server, join):
    await echoed(await join("doc", token("doc")), "text")
    base = ["snapshots", "save", "doc", "--label", "from the cli", "--server", server.http_url]
    code, _, err = await run_collab(*base, env={"COLLAB_TOKEN": ""})
    assert code == 1 and "401" in err and "--token" in err
    code, out, err = await run_collab(*base, "--token", token("doc", sub="cli-user"))
    assert code == 0 and "by cli-user" in out, err
    code, _, err = await run_collab(*base, env={"COLLAB_TOKEN": token("doc", role="read")})
    assert code == 1 and "403" in err
    code, out, err = await run_collab(
        "snapshots", "list", "doc", "--server", server.http_url,
        env={"COLLAB_TOKEN": token("doc", role="read")},
    )  # fmt: skip
    assert code == 0 and "from the cli" in out, err


async def test_refusals_are_counted_by_reason_in_metrics(server, join):
    await refusal(server.ws_url("doc"))
    await refusal(f"{server.ws_url('doc')}?token={token('doc', ttl_s=-120)}")
    reader = await join("doc", token("doc", role="read"))
    reader.text.insert(0, "x")
    assert await reader.wait_closed() == 4403
    async with http(server, Origin="https://evil.example") as api:
        assert (await api.get("/api/documents")).status_code == 403
        exposition = (await api.get("/metrics")).text
    for reason in ("missing_token", "expired", "read_only_edit", "bad_origin"):
        assert f'collab_auth_failures_total{{reason="{reason}"}} 1.0' in exposition, reason


def _dropped_step2s(server: RunningServer) -> float:
    """Read-only connections' sync step 2s the server dropped (a metric)."""
    return metric_value(
        server.runtime.metrics, "collab_messages_ignored_total", reason="read_only_step2"
    )
