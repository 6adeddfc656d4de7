"""The real npm Yjs client as a test fixture: tests/interop/client.mjs in a subprocess.

Each Node client connects with `new WebsocketProvider(url, doc, ydoc,
{WebSocketPolyfill: WebSocket})` exactly as an application does. The script prints
one JSON line once its expectations hold (or exits non-zero on its own timeout);
with --hold-stdin it stays connected until we close its stdin.

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

import pytest

from tests.support.server import RunningServer
from tests.support.waiting import TIMEOUT_S

REPO_ROOT = Path(__file__).resolve().parents[2]
INTEROP_DIR = REPO_ROOT / "tests" / "interop"
CLIENT_SCRIPT = INTEROP_DIR / "client.mjs"
# The Node client gives up after TIMEOUT_S; we allow extra for Node's start-up.
PROCESS_TIMEOUT_S = TIMEOUT_S * 2
_INSTALL_HINT = "run `make install` (it installs the npm packages with `npm ci` in tests/interop)"


def require_node() -> None:
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

    async def result(self, timeout_s: float = PROCESS_TIMEOUT_S) -> dict[str, Any]:
        """The JSON line the client prints once every expectation holds."""
        assert self.process.stdout is not None
        try:
            line = await asyncio.wait_for(self.process.stdout.readline(), timeout_s)
        except TimeoutError:
            self.process.kill()
            _, stderr = await self.process.communicate()
            pytest.fail(f"{self.label}: no result within {timeout_s}s\n{stderr.decode()}")
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


async def node_clients(server: RunningServer) -> AsyncIterator[NodeFactory]:
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
