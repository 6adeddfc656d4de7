from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from collab.config import Settings
from tests.helpers import RunningServer, run_server
from tests.nodeclient import NodeFactory, node_clients
from tests.yclient import YClient


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'collab.db'}",
        room_grace_s=0.2,
        janitor_interval_s=0.05,
        keepalive_interval_s=15.0,
    )


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[RunningServer]:
    async with run_server(settings) as running:
        yield running


@pytest.fixture
async def connect(server: RunningServer) -> AsyncIterator[Callable[..., Awaitable[YClient]]]:
    clients: list[YClient] = []

    async def _connect(document: str = "doc", **kwargs: object) -> YClient:
        client = YClient(server.ws_url(document))
        clients.append(client)
        return await client.connect(**kwargs)  # type: ignore[arg-type]

    yield _connect
    for client in clients:
        await client.close()


@pytest.fixture
async def node_client(server: RunningServer) -> AsyncIterator[NodeFactory]:
    """Start real npm y-websocket clients (tests/nodeclient.py) against `server`."""
    async with contextlib.asynccontextmanager(node_clients)(server) as start:
        yield start
