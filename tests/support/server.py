"""A real server for tests: uvicorn in this event loop on port 0, or
`collab serve` in a subprocess; and the `collab` command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from collab.cli.serve import uvicorn_config
from collab.config import Settings
from collab.metrics import Metrics
from tests.support.waiting import TIMEOUT_S, eventually


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    app: FastAPI
    server: uvicorn.Server
    port: int
    settings: Settings

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, document: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{document}"

    @property
    def runtime(self) -> Any:
        return self.app.state.runtime


@contextlib.asynccontextmanager
async def run_server(settings: Settings) -> AsyncIterator[RunningServer]:
    """A real uvicorn on port 0 in this event loop; waits on `server.started`."""
    config = uvicorn_config(settings, host="127.0.0.1", port=0, lifespan="on")
    app = config.app
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    await eventually(lambda: server.started or task.done(), what="server start")
    if task.done():
        task.result()
        raise RuntimeError("server exited during start-up")
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield RunningServer(app, server, port, settings)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, TIMEOUT_S * 3)


REPO = Path(__file__).resolve().parents[2]


class ServerProcess:
    """`collab serve` in a subprocess; `env` adds COLLAB_* settings, `args` flags."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        *,
        args: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.log_path = log_path
        self.args = list(args)
        self.env = None if env is None else {**os.environ, **env}
        self.process: asyncio.subprocess.Process | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, document: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{document}"

    async def start(self) -> None:
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "collab",
            "serve",
            "--port",
            str(self.port),
            "--database",
            self.database_url,
            *self.args,
            cwd=REPO,
            env=self.env,
            stdout=log,
            stderr=log,
        )
        log.close()
        async with httpx.AsyncClient() as http:

            async def is_healthy() -> bool:
                assert self.process is not None and self.process.returncode is None, (
                    self.log_path.read_text()
                )
                with contextlib.suppress(httpx.TransportError):
                    return (await http.get(f"http://127.0.0.1:{self.port}/healthz")).is_success
                return False

            try:
                await eventually(is_healthy, what="server process healthy")
            except BaseException:
                # Never leave a server behind a failed start: it would hold its
                # port and database, and load the machine, for the rest of the run.
                if self.process.returncode is None:
                    self.process.kill()
                    await self.process.wait()
                raise

    async def stop(self, sig: int) -> int:
        assert self.process is not None
        self.process.send_signal(sig)
        return await asyncio.wait_for(self.process.wait(), TIMEOUT_S * 3)


@contextlib.asynccontextmanager
async def server_process(
    tmp_path: Path, *, args: Sequence[str] = (), env: Mapping[str, str] | None = None
) -> AsyncIterator[ServerProcess]:
    server = ServerProcess(
        f"sqlite+aiosqlite:///{tmp_path / 'collab.db'}", tmp_path / "log", args=args, env=env
    )
    await server.start()
    try:
        yield server
    finally:
        if server.process and server.process.returncode is None:
            server.process.kill()
            await server.process.wait()


async def run_collab(*args: str, env: Mapping[str, str] | None = None) -> tuple[int, str, str]:
    """`python -m collab ARGS` in a subprocess: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "collab",
        *args,
        cwd=REPO,
        env=None if env is None else {**os.environ, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S * 3)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def metric_value(metrics: Metrics, name: str, **labels: str) -> float:
    """A sample of the server's Prometheus metrics (0 when never incremented)."""
    return metrics.registry.get_sample_value(name, labels) or 0.0
