"""Events and webhooks on a real server: a real local HTTP receiver, real
WebSocket clients, a real database; kill -9 between a commit and its delivery."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from collab.config import Settings
from tests.integration.test_auth import SECRET as AUTH_SECRET
from tests.integration.test_auth import token
from tests.support.receiver import Receiver, webhook_receiver
from tests.support.server import RunningServer, metric_value, run_server, server_process
from tests.support.waiting import TIMEOUT_S, eventually
from tests.support.yclient import YClient

SECRET = "a-webhook-signing-secret-of-some-length"


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with webhook_receiver() as running:
        yield running


def webhook_settings(settings: Settings, receiver: Receiver, **changes: Any) -> Settings:
    fast = {
        "webhook_urls": receiver.url,
        "webhook_secret": SECRET,
        "events_debounce_s": 0.2,
        "events_poll_interval_s": 0.05,
        "webhook_retry_base_s": 0.05,
        "webhook_retry_max_s": 0.2,
        "webhook_timeout_s": 2.0,
    }
    return settings.replace(**{**fast, **changes})


def types_of(events: list[dict[str, Any]], document: str) -> list[str]:
    """The document's event types in order, runs of `document.updated` as one."""
    types = [e["type"] for e in events if e["document"] == document]
    return [t for t, _ in itertools.groupby(types)]


async def edit(server: RunningServer | Any, document: str, text: str) -> None:
    client = await YClient(server.ws_url(document)).connect()
    client.text.insert(len(client.text), text)
    await eventually(client.is_saved, what="edit durable")
    await client.close()


async def test_events_arrive_signed_and_in_order_for_each_document(settings, receiver):
    async with run_server(webhook_settings(settings, receiver)) as server:
        http = httpx.AsyncClient(base_url=server.http_url)
        await edit(server, "notes", "hello")
        await edit(server, "other", "x")
        saved = (await http.post("/api/documents/notes/snapshots", json={"label": "v1"})).json()
        await edit(server, "notes", " world")
        restored = await http.post(f"/api/documents/notes/snapshots/{saved['id']}/restore")
        assert restored.status_code == 200, restored.text
        assert (await http.delete("/api/documents/notes")).status_code == 204
        expected = [
            "document.created",
            "document.updated",
            "version.saved",
            "document.updated",
            "document.restored",
            "document.deleted",
        ]
        await eventually(lambda: types_of(receiver.delivered, "notes") == expected)
        await eventually(lambda: types_of(receiver.delivered, "other")[-1:] == ["document.updated"])
        feed = (await http.get("/api/events", params={"limit": 1000})).json()["events"]
        await http.aclose()
    # The feed and the webhooks tell the same events, to the character.
    assert sorted(feed, key=lambda e: e["id"]) == sorted(receiver.delivered, key=lambda e: e["id"])
    now = time.time()
    assert all(r.is_signed_with(SECRET, now) for r in receiver.requests)
    assert not any(r.is_signed_with("another secret", now) for r in receiver.requests)
    events = receiver.delivered
    ids = [e["id"] for e in events]
    assert len(set(ids)) == len(ids)
    for document in ("notes", "other"):  # ordered per document (documents in parallel)
        of_document = [e["id"] for e in events if e["document"] == document]
        assert of_document == sorted(of_document)
    assert [r.headers["x-collab-event-id"] for r in receiver.requests] == [str(i) for i in ids]
    notes = [e for e in events if e["document"] == "notes"]
    first_update = notes[1]["data"]
    assert first_update["seq"] >= first_update["from_seq"] > 0
    assert notes[2]["data"] == {"version": saved["id"], "label": "v1", "author": None}
    assert notes[4]["data"]["version"] == saved["id"]
    assert notes[4]["data"]["pre_restore_version"] > saved["id"]


async def test_a_commit_wakes_the_events_task_without_waiting_for_its_poll(settings, receiver):
    # A poll far beyond the test's timeout: only the commit's wake-up delivers.
    slow_poll = webhook_settings(settings, receiver, events_poll_interval_s=3600.0)
    async with run_server(slow_poll) as server:
        await edit(server, "woken", "hello")
        await eventually(lambda: types_of(receiver.delivered, "woken")[:1] == ["document.created"])
        async with httpx.AsyncClient(base_url=server.http_url) as http:
            saved = await http.post("/api/documents/woken/snapshots", json={"label": "v1"})
            assert saved.status_code == 201, saved.text
        # The save's transaction turns the pending edit into its event too.
        expected = ["document.created", "document.updated", "version.saved"]
        await eventually(lambda: types_of(receiver.delivered, "woken") == expected)


async def test_editing_without_pause_is_one_updated_event_per_quiet_period(settings, receiver):
    changed = webhook_settings(settings, receiver, events_debounce_s=1.0)
    async with run_server(changed) as server:
        client = await YClient(server.ws_url("busy")).connect()
        for i in range(20):
            client.text.insert(len(client.text), f"<{i}>")
        await eventually(client.is_saved)
        await client.close()
        await eventually(lambda: types_of(receiver.delivered, "busy")[-1:] == ["document.updated"])
    updated = [e for e in receiver.delivered if e["type"] == "document.updated"]
    assert len(updated) == 1


async def test_a_receiver_that_fails_five_times_gets_the_event_on_the_sixth_try(settings, receiver):
    receiver.failures_left = 5
    async with run_server(webhook_settings(settings, receiver)) as server:
        await edit(server, "doc", "a")
        await eventually(lambda: len(receiver.delivered) >= 2, what="created and updated")
        failures = metric_value(server.runtime.metrics, "collab_webhook_deliveries_total",
                                outcome="failed")  # fmt: skip
    first = [r for r in receiver.requests if r.event["id"] == receiver.delivered[0]["id"]]
    assert [r.status for r in first] == [500] * 5 + [204]
    assert [r.headers["x-collab-delivery-attempt"] for r in first] == [str(n) for n in range(1, 7)]
    assert failures == 5
    assert types_of(receiver.delivered, "doc") == ["document.created", "document.updated"]


async def test_a_subscriber_that_does_not_answer_holds_up_no_other(settings, receiver):
    receiver.is_hanging = True
    async with webhook_receiver() as prompt:
        urls = f"{receiver.url},{prompt.url}"
        # Far longer than the wait below: a delivery to `prompt` that waited for
        # the silent one would not arrive in time.
        silent_timeout_s = 10 * TIMEOUT_S
        changed = webhook_settings(
            settings, receiver, webhook_urls=urls, webhook_timeout_s=silent_timeout_s
        )
        async with run_server(changed) as server:
            await edit(server, "doc", "a")
            await edit(server, "other", "b")
            await eventually(lambda: len(prompt.delivered) == 4, what="all to the prompt one")
            assert receiver.held == 2  # one document's queue each, both unanswered
            assert receiver.requests == []
    assert types_of(prompt.delivered, "doc") == ["document.created", "document.updated"]


async def test_a_dead_endpoint_is_parked_listed_counted_and_retried_on_request(settings, receiver):
    receiver.is_down = True
    async with run_server(webhook_settings(settings, receiver, webhook_max_attempts=3)) as server:
        http = httpx.AsyncClient(base_url=server.http_url)
        await edit(server, "doc", "a")

        async def parked() -> list[dict[str, Any]]:
            return (await http.get("/api/webhooks/parked")).json()  # type: ignore[no-any-return]

        await eventually(lambda: _has_len(parked(), 2), what="both events parked")
        listing = await parked()
        assert {p["event"]["type"] for p in listing} == {"document.created", "document.updated"}
        assert all(p["attempts"] == 3 and p["last_error"] == "HTTP 500" for p in listing)
        assert len(receiver.requests) == 6
        metrics = server.runtime.metrics
        await eventually(lambda: metric_value(metrics, "collab_webhook_parked") == 2)
        assert metric_value(metrics, "collab_webhook_deliveries_total", outcome="parked") == 2
        receiver.is_down = False
        retried = await http.post("/api/webhooks/parked/retry", json={})
        assert retried.json() == {"retried": 2}
        assert metric_value(metrics, "collab_webhook_parked") == 0
        await eventually(lambda: len(receiver.delivered) == 2)
        assert await parked() == []
        await http.aclose()
    assert types_of(receiver.delivered, "doc") == ["document.created", "document.updated"]


async def _has_len(listing: Any, length: int) -> bool:
    return len(await listing) == length


async def test_the_feed_pages_every_event_by_cursor(settings):
    changed = settings.replace(events_debounce_s=0.1, events_poll_interval_s=0.05)
    async with run_server(changed) as server:
        http = httpx.AsyncClient(base_url=server.http_url)
        for name in ("a", "b", "c"):
            await edit(server, name, name)

        async def everything() -> list[dict[str, Any]]:
            events, after = [], 0
            while True:
                page = (await http.get("/api/events", params={"after": after, "limit": 2})).json()
                assert len(page["events"]) <= 2
                if not page["events"]:
                    assert page["next"] == after
                    return events
                events.extend(page["events"])
                after = page["next"]
                assert after == page["events"][-1]["id"]

        events = await eventually(lambda: _all_six(everything()))
        later = (await http.get("/api/events", params={"after": events[-1]["id"]})).json()
        await http.aclose()
    assert [e["id"] for e in events] == list(range(1, 7))
    assert later == {"events": [], "next": 6}
    for name in ("a", "b", "c"):
        assert types_of(events, name) == ["document.created", "document.updated"]


async def _all_six(events: Any) -> list[dict[str, Any]] | None:
    listed: list[dict[str, Any]] = await events
    return listed if len(listed) == 6 else None


async def test_subscriptions_are_added_listed_and_deleted_through_the_admin_api(settings, receiver):
    async with (
        webhook_receiver() as added_receiver,
        run_server(webhook_settings(settings, receiver)) as server,
    ):
        http = httpx.AsyncClient(base_url=server.http_url)
        configured = (await http.get("/api/webhooks")).json()
        assert [(s["url"], s["source"]) for s in configured] == [(receiver.url, "config")]
        own_secret = "another-secret-of-sixteen-or-more"
        added = await http.post("/api/webhooks", json={"url": added_receiver.url,
                                                       "secret": own_secret})  # fmt: skip
        assert added.status_code == 201 and added.json()["has_own_secret"] is True
        assert (await http.post("/api/webhooks", json={"url": "ftp://x"})).status_code == 422
        await edit(server, "doc", "a")
        await eventually(lambda: len(added_receiver.delivered) == 2)
        assert all(r.is_signed_with(own_secret, time.time()) for r in added_receiver.requests)
        assert (await http.delete(f"/api/webhooks/{configured[0]['id']}")).status_code == 404
        assert (await http.delete(f"/api/webhooks/{added.json()['id']}")).status_code == 204
        assert [s["source"] for s in (await http.get("/api/webhooks")).json()] == ["config"]
        await http.aclose()
    assert len(receiver.delivered) == 2


async def test_a_server_killed_between_commit_and_delivery_delivers_after_restart(
    tmp_path, receiver
):
    env = {
        "COLLAB_WEBHOOK_URLS": receiver.url,
        "COLLAB_WEBHOOK_SECRET": SECRET,
        "COLLAB_EVENTS_DEBOUNCE_S": "0.1",
        # A claim of the killed process holds 2 * 1 + 5 s; a failed attempt is
        # retried 0.1 s later.
        "COLLAB_WEBHOOK_TIMEOUT_S": "1",
        "COLLAB_WEBHOOK_RETRY_BASE_S": "0.1",
    }
    # Down for the first process's life: whatever it got to before it was killed
    # (nothing, a claim, a failed attempt: the commit wakes its dispatcher, so
    # this is a race), the events can only be delivered after the restart.
    receiver.is_down = True
    async with server_process(tmp_path, env=env) as server:
        client = await YClient(server.ws_url("doc")).connect()
        client.text.insert(0, "durable")
        await eventually(client.is_saved, what="committed")
        server.process.kill()  # type: ignore[union-attr]
        await server.process.wait()  # type: ignore[union-attr]
        await client.wait_closed()
        assert receiver.delivered == []
        receiver.is_down = False
        server.env = {**(server.env or {}), "COLLAB_EVENTS_POLL_INTERVAL_S": "0.05"}
        await server.start()
        await eventually(
            lambda: len(receiver.delivered) == 2,
            timeout_s=TIMEOUT_S + 7.0,  # past a claim the killed process may hold
            what="delivered after restart",
        )
    assert types_of(receiver.delivered, "doc") == ["document.created", "document.updated"]
    assert all(r.is_signed_with(SECRET, time.time()) for r in receiver.requests)


async def test_a_delivery_claimed_by_a_killed_server_goes_out_at_restart_not_after_its_claim(
    tmp_path, receiver
):
    env = {"COLLAB_WEBHOOK_URLS": receiver.url, "COLLAB_WEBHOOK_SECRET": SECRET}
    receiver.is_hanging = True  # the first process's delivery stays in flight
    async with server_process(tmp_path, env=env) as server:
        client = await YClient(server.ws_url("doc")).connect()
        client.text.insert(0, "durable")
        await eventually(lambda: receiver.held == 1, what="a delivery in flight")
        server.process.kill()  # type: ignore[union-attr]
        await server.process.wait()  # type: ignore[union-attr]
        await client.wait_closed()
        receiver.is_hanging = False  # the held request stays held: never answered
        server.env = {**(server.env or {}), "COLLAB_EVENTS_POLL_INTERVAL_S": "0.05"}
        started = time.monotonic()
        await server.start()
        # Its claim would hold for 2 * 10 + 5 s; the killed process is gone from
        # this host, so the restarted one gives the claim back at once.
        await eventually(
            lambda: "document.created" in types_of(receiver.delivered, "doc"),
            what="delivered after restart",
        )
        assert time.monotonic() - started < 25.0
    assert types_of(receiver.delivered, "doc")[0] == "document.created"


async def test_events_and_webhooks_need_an_admin_token_and_subscriptions_one_for_every_document(
    settings, receiver
):
    secured = webhook_settings(settings, receiver).replace(auth_secret=AUTH_SECRET)
    async with run_server(secured) as server:
        http = httpx.AsyncClient(base_url=server.http_url)

        def bearer(value: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {value}"}

        writer = bearer(token("*", role="write"))
        scoped_admin = bearer(token("team-*", role="admin"))
        admin = bearer(token("*", role="admin"))
        assert (await http.get("/api/events")).status_code == 401
        assert (await http.get("/api/events", headers=writer)).status_code == 403
        assert (await http.get("/api/webhooks", headers=scoped_admin)).status_code == 403
        assert (await http.get("/api/webhooks", headers=admin)).status_code == 200
        add = {"url": "http://127.0.0.1:9/x"}
        assert (await http.post("/api/webhooks", json=add, headers=scoped_admin)).status_code == 403
        client = await YClient(f"{server.ws_url('team-a')}?token={token('*')}").connect()
        client.text.insert(0, "a")
        await eventually(client.is_saved)
        await client.close()
        client = await YClient(f"{server.ws_url('other')}?token={token('*')}").connect()
        client.text.insert(0, "b")
        await eventually(client.is_saved)
        await client.close()

        async def documents_seen(headers: dict[str, str]) -> set[str]:
            page = (await http.get("/api/events", headers=headers)).json()
            return {e["document"] for e in page["events"]}

        await eventually(lambda: _equals(documents_seen(admin), {"team-a", "other"}))
        assert await documents_seen(scoped_admin) == {"team-a"}
        await http.aclose()


async def _equals(value: Any, expected: object) -> bool:
    return await value == expected


async def test_an_http_edit_names_its_author_in_document_updated(settings, receiver):
    secured = webhook_settings(settings, receiver).replace(auth_secret=AUTH_SECRET)
    async with run_server(secured) as server:
        headers = {"Authorization": f"Bearer {token('*', sub='summariser')}"}
        async with httpx.AsyncClient(base_url=server.http_url, headers=headers) as http:
            created = await http.post("/api/documents", json={"name": "doc", "content": "hi"})
            assert created.status_code == 201, created.text
            edited = await http.patch("/api/documents/doc/text/content", json=[{"insert": ">"}])
            assert edited.status_code == 200, edited.text
            await eventually(lambda: "document.updated" in types_of(receiver.delivered, "doc"))
    updated = [e for e in receiver.delivered if e["type"] == "document.updated"]
    assert [e["data"]["author"] for e in updated] == ["summariser"]
