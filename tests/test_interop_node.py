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
import shutil
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import TIMEOUT_S, RunningServer, eventually
from tests.yclient import YClient

pytestmark = pytest.mark.node

REPO_ROOT = Path(__file__).resolve().parent.parent
INTEROP_DIR = Path(__file__).resolve().parent / "interop"
CLIENT_SCRIPT = INTEROP_DIR / "client.mjs"
# The Node client gives up after TIMEOUT_S; we allow extra for Node's start-up.
PROCESS_TIMEOUT_S = TIMEOUT_S * 2
_INSTALL_HINT = "run `make install` (it installs the npm packages with `npm ci` in tests/interop)"


@pytest.fixture(scope="module", autouse=True)
def _node_is_installed() -> None:
    """Fail, never skip: a missing toolchain must not look like a passing suite."""
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"`node` (Node.js 20+) is not on PATH: install it, then {_INSTALL_HINT}")
    version = subprocess.run(
        [node, "--version"], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < 20:
        pytest.fail(f"Node.js 20+ is required, found {version}")
    for package in ("yjs", "y-websocket", "ws"):
        if not (INTEROP_DIR / "node_modules" / package / "package.json").is_file():
            pytest.fail(f"npm package {package!r} is missing from {INTEROP_DIR}: {_INSTALL_HINT}")


class NodeClient:
    """One running client.mjs process."""

    def __init__(self, process: asyncio.subprocess.Process, label: str) -> None:
        self.process = process
        self.label = label

    async def result(self) -> dict[str, Any]:
        """The JSON line the client prints once every expectation holds."""
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), PROCESS_TIMEOUT_S)
        except TimeoutError:
            self.process.kill()
            _, stderr = await self.process.communicate()
            pytest.fail(f"{self.label}: no result within {PROCESS_TIMEOUT_S}s\n{stderr.decode()}")
        if not line:
            _, stderr = await self.process.communicate()
            pytest.fail(
                f"{self.label} exited with code {self.process.returncode} and no result:\n"
                f"{stderr.decode()}"
            )
        return json.loads(line)  # type: ignore[no-any-return]

    async def finish(self) -> None:
        """Close its stdin (ends --hold-stdin); it must disconnect and exit 0."""
        assert self.process.stdin is not None
        self.process.stdin.close()  # communicate() without input leaves it open on 3.11
        try:
            _, stderr = await asyncio.wait_for(self.process.communicate(), PROCESS_TIMEOUT_S)
        except TimeoutError:
            self.process.kill()
            _, stderr = await self.process.communicate()
            pytest.fail(f"{self.label} did not exit within {PROCESS_TIMEOUT_S}s\n{stderr.decode()}")
        assert self.process.returncode == 0, f"{self.label} failed:\n{stderr.decode()}"
        assert not stderr, f"{self.label} reported on stderr:\n{stderr.decode()}"

    async def run(self) -> dict[str, Any]:
        result = await self.result()
        await self.finish()
        return result


NodeFactory = Callable[..., Awaitable[NodeClient]]


@pytest.fixture
async def node_client(server: RunningServer) -> AsyncIterator[NodeFactory]:
    # What an application passes to WebsocketProvider; it appends "/<document>".
    server_url = f"ws://127.0.0.1:{server.port}/ws"
    processes: list[asyncio.subprocess.Process] = []

    async def _start(document: str, **options: str | int | bool | list[str]) -> NodeClient:
        """`insert="x", expect_contains=["a", "b"], hold_stdin=True` -> client.mjs flags."""
        assert f"{server_url}/{document}" == server.ws_url(document)
        args: list[str] = []
        for key, value in options.items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                args.append(flag)
            elif isinstance(value, list):
                args += [arg for item in value for arg in (flag, item)]
            else:
                args += [flag, str(value)]
        process = await asyncio.create_subprocess_exec(
            "node",
            str(CLIENT_SCRIPT.relative_to(REPO_ROOT)),
            "--server",
            server_url,
            "--doc",
            document,
            "--timeout-ms",
            str(int(TIMEOUT_S * 1000)),
            *args,
            cwd=REPO_ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        processes.append(process)
        return NodeClient(process, f"node client #{len(processes)} on {document!r}")

    yield _start
    for process in processes:  # only if a test failed half-way
        if process.returncode is None:
            process.kill()
            await process.communicate()


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
    registry = server.services.registry
    await eventually(lambda: "interop-stored" not in registry.rooms, what="room unloaded")

    # It appends once synced, so the result proves the stored text came first.
    node = await node_client("interop-stored", insert=" + yjs", expect=stored + " + yjs")
    assert (await node.run())["text"] == stored + " + yjs"
    assert registry.loads == 2, "the Node client's document was loaded from storage"

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
