"""Webhooks from a cluster: two `collab serve` processes on one PostgreSQL and
one Redis, one subscriber; every event is delivered once, not once per process."""

from __future__ import annotations

import asyncio
import collections

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import create_async_engine

from collab.storage.sql_schema import events, pending_changes, webhook_deliveries
from tests.cluster.test_cluster import StartCluster, cluster  # noqa: F401 (the fixture)
from tests.support.receiver import webhook_receiver
from tests.support.waiting import eventually
from tests.support.yclient import YClient

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

SECRET = "a-webhook-signing-secret-of-some-length"


async def _outbox_drained(database_url: str) -> bool:
    """Every event published and delivered: nothing could be delivered again."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            left = [
                await conn.scalar(select(func.count()).select_from(webhook_deliveries)),
                await conn.scalar(select(func.count()).select_from(pending_changes)),
                await conn.scalar(
                    select(func.count()).select_from(events).where(events.c.seq.is_(None))
                ),
            ]
    finally:
        await engine.dispose()
    return left == [0, 0, 0]


async def test_two_processes_deliver_each_event_once_per_subscription(
    cluster: StartCluster,  # noqa: F811
    postgres_url: str,
):
    async with webhook_receiver() as receiver:
        env = {
            "COLLAB_WEBHOOK_URLS": receiver.url,
            "COLLAB_WEBHOOK_SECRET": SECRET,
            "COLLAB_EVENTS_DEBOUNCE_S": "0.1",
            "COLLAB_EVENTS_POLL_INTERVAL_S": "0.02",
        }
        first, second = await cluster(2, env=env)
        clients = []
        for i in range(6):
            process = (first, second)[i % 2]
            client = await YClient(process.ws_url(f"doc-{i}")).connect()
            client.text.insert(0, f"written through process {i % 2}")
            clients.append(client)
        shared = [await YClient(p.ws_url("shared")).connect() for p in (first, second)]
        for round_ in range(5):
            for n, client in enumerate(shared):
                client.text.insert(len(client.text), f"<{n}.{round_}>")
            await asyncio.sleep(0.005)  # a stream of edits from both, not one burst
        for client in clients + shared:
            await eventually(client.is_saved)
        names = [f"doc-{i}" for i in range(6)] + ["shared"]

        def every_document_told() -> bool:
            told = {(e["document"], e["type"]) for e in receiver.delivered}
            return all((n, "document.updated") in told for n in names)

        await eventually(every_document_told, what="an updated event for every document")
        await eventually(lambda: _outbox_drained(postgres_url), what="outbox drained")
        for client in clients + shared:
            await client.close()
    ids = [e["id"] for e in receiver.delivered]
    duplicates = [i for i, count in collections.Counter(ids).items() if count > 1]
    assert duplicates == []
    assert sorted(ids) == list(range(1, len(ids) + 1))  # none missing either
    for name in names:
        of_document = [e for e in receiver.delivered if e["document"] == name]
        assert of_document[0]["type"] == "document.created"
        assert [e["id"] for e in of_document] == sorted(e["id"] for e in of_document)
