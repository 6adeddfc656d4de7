from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest
from redis.asyncio import Redis

from collab.config import Settings
from tests.support.nodeclient import NodeFactory, node_clients
from tests.support.server import RunningServer, run_server
from tests.support.services import (
    POSTGRES_DEFAULT_DSN,
    REDIS_DEFAULT_URL,
    PostgresServer,
    RedisServer,
    given_or_own,
)
from tests.support.yclient import YClient


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
    """Start real npm y-websocket clients (tests/support/nodeclient.py) against `server`."""
    async with contextlib.asynccontextmanager(node_clients)(server) as start:
        yield start


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> Iterator[str]:
    """COLLAB_TEST_POSTGRES_DSN (default: the local server), or our own from the binaries."""
    yield from given_or_own("COLLAB_TEST_POSTGRES_DSN", POSTGRES_DEFAULT_DSN, 5432, PostgresServer)


@pytest.fixture
async def postgres_url(postgres_admin_dsn: str) -> AsyncIterator[str]:
    """A fresh database per test, dropped afterwards."""
    name = f"collab_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(postgres_admin_dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        base = postgres_admin_dsn.rsplit("/", 1)[0]
        yield f"{base.replace('postgresql://', 'postgresql+asyncpg://')}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
def shared_redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """COLLAB_TEST_REDIS_URL (default: the local server), or our own from the binary."""
    directory = tmp_path_factory.mktemp("redis")
    yield from given_or_own(
        "COLLAB_TEST_REDIS_URL", REDIS_DEFAULT_URL, 6379, lambda: RedisServer(directory)
    )


@pytest.fixture
async def redis_prefix(shared_redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own on the shared Redis; its keys go afterwards."""
    prefix = f"collab-test-{uuid.uuid4().hex[:12]}:"
    yield prefix
    redis = Redis.from_url(shared_redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{prefix}*")]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()
