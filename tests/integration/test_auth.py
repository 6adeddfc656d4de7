"""Tokens, roles and origins against the real server: real WebSockets (pycrdt and the
npm y-websocket client), real HTTP, real server processes for start-up and logs."""

from __future__ import annotations

import asyncio
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
        assert named.json()["author"] == "Walter W.", "an explicit author wins"
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
