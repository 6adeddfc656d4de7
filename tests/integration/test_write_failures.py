"""When the database fails, nothing is relayed, nothing is lost, nothing unloads;
and what it refuses for good is never served. Each class of error is injected
for real: a database that is down, a privilege revoked, a table missing, a
constraint refusing a document's rows (raw from the sqlite3 driver on SQLite's
hot path, through SQLAlchemy on PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import asyncpg
import httpx
import pytest
from pycrdt import Text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from collab.errors import CloseCode
from collab.metrics import Metrics
from collab.rooms.registry import build_doc
from collab.storage.sql_store import SqlStore
from collab.storage.store import AppendUpdate, WriteContention
from collab.storage.writer import CONTENTION_RETRIES, UpdateWriter
from tests.support.server import run_server
from tests.support.waiting import TIMEOUT_S, eventually
from tests.support.yclient import YClient


class DatabaseOutage(Exception):
    pass


async def test_updates_wait_for_the_database_and_survive_an_outage(connect, server, monkeypatch):
    store = server.runtime.store
    real_commit = store.commit
    outage = {"failures": 0, "active": True}

    async def failing_commit(ops):
        if outage["active"]:
            outage["failures"] += 1
            raise DatabaseOutage("database unavailable")
        return await real_commit(ops)

    a = await connect("doc")
    b = await connect("doc")
    monkeypatch.setattr(store, "commit", failing_commit)
    a.text.insert(0, "during the outage")
    await eventually(lambda: outage["failures"] >= 3, what="writer retries")
    # Not durable, so not relayed: neither the other client nor the sender's echo.
    assert str(b.text) == "" and a.received_updates == 0
    # A new client's initial sync must not expose it either.
    late_sync = asyncio.create_task(connect("doc"))
    await asyncio.sleep(0.2)
    assert not late_sync.done()
    await b.close()
    await a.close()
    registry = server.runtime.registry
    await asyncio.sleep(server.settings.room_grace_s + 0.2)
    assert "doc" in registry.rooms, "a room with unsaved updates must stay in memory"

    outage["active"] = False
    late = await late_sync
    assert str(late.text) == "during the outage"
    stored = build_doc(await store.load("doc"), "doc")
    assert stored.get("text", type=Text).to_py() == "during the outage"


class _Deadlock(Exception):
    """What a PostgreSQL driver raises when the server aborts a deadlocked transaction."""

    sqlstate = "40P01"


def _collide(store: SqlStore, monkeypatch: pytest.MonkeyPatch, times: int) -> list[int]:
    """The next `times` transactions of `store` collide with another process's."""
    real_commit = store._commit
    attempts = [0]

    async def colliding_commit(ops):
        attempts[0] += 1
        if attempts[0] <= times:
            raise OperationalError("INSERT INTO updates ...", {}, _Deadlock("deadlock detected"))
        return await real_commit(ops)

    monkeypatch.setattr(store, "_commit", colliding_commit)
    return attempts


async def test_only_the_writer_retries_contention_at_once_then_as_an_outage(settings, monkeypatch):
    store = SqlStore(settings.database_url)
    await store.open()
    try:
        attempts = _collide(store, monkeypatch, times=1)
        # The store makes one attempt and says why it failed; it never retries.
        with pytest.raises(WriteContention):
            await store.commit([AppendUpdate("doc", b"\x00\x00")])
        assert attempts[0] == 1

        # The writer runs a colliding batch again at once (a backoff would outlast
        # the test), without calling it an outage...
        attempts = _collide(store, monkeypatch, times=CONTENTION_RETRIES)
        metrics = Metrics()
        writer = UpdateWriter(store, metrics=metrics, retry_initial_s=TIMEOUT_S * 10)
        runner = asyncio.create_task(writer.run())
        row_id = await asyncio.wait_for(writer.submit(AppendUpdate("doc", b"\x00\x00")), TIMEOUT_S)
        assert isinstance(row_id, int) and attempts[0] == CONTENTION_RETRIES + 1
        assert not writer.is_failing
        assert metrics.registry.get_sample_value("collab_commit_failures_total") == 0
        await writer.close(runner, TIMEOUT_S)

        # ...until contention persists: then it is an outage (backoff, failing).
        attempts = _collide(store, monkeypatch, times=CONTENTION_RETRIES + 1)
        writer = UpdateWriter(store, metrics=metrics, retry_initial_s=0.01)
        runner = asyncio.create_task(writer.run())
        failing = asyncio.create_task(writer.wait_until_failing())
        row_id = await asyncio.wait_for(writer.submit(AppendUpdate("doc", b"\x00\x00")), TIMEOUT_S)
        assert isinstance(row_id, int) and attempts[0] == CONTENTION_RETRIES + 2
        assert failing.done() and not writer.is_failing, "failed, then recovered"
        assert metrics.registry.get_sample_value("collab_commit_failures_total") == 1
        await writer.close(runner, TIMEOUT_S)
    finally:
        await store.close()


# -- what the database refuses, by class ---------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'collab.db'}"
    return str(request.getfixturevalue("postgres_url"))


def _asyncpg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _run_sql(url: str, *statements: str) -> None:
    """Run `statements` on the test database behind the server's back."""
    if url.startswith("sqlite"):
        # In a thread: the server runs on this event loop, and may be in the middle
        # of a transaction (the events task, attribution) that the loop must finish.
        await asyncio.to_thread(_run_sqlite, url.split("///", 1)[1], statements)
        return
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _run_sqlite(path: str, statements: tuple[str, ...]) -> None:
    with sqlite3.connect(path, isolation_level=None, timeout=TIMEOUT_S) as db:
        for statement in statements:
            db.execute(statement)


def _refuse_rows_of(url: str, document: str) -> list[str]:
    """A constraint that refuses the document's log rows, as a foreign key would."""
    if url.startswith("sqlite"):
        return [
            f"CREATE TRIGGER refuse_rows BEFORE INSERT ON updates WHEN NEW.document = '{document}'"
            " BEGIN SELECT RAISE(ABORT, 'FOREIGN KEY constraint failed'); END"
        ]
    return [
        "CREATE FUNCTION refuse_rows() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        f" IF NEW.document = '{document}' THEN RAISE EXCEPTION 'refused'"
        " USING ERRCODE = 'foreign_key_violation'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER refuse_rows BEFORE INSERT ON updates"
        " FOR EACH ROW EXECUTE FUNCTION refuse_rows()",
    ]


async def _stored_text(url: str, document: str) -> str:
    store = SqlStore(url)
    await store.open(migrate=False)
    try:
        return str(build_doc(await store.load(document), document).get("text", type=Text))
    finally:
        await store.close()


async def test_a_write_refused_for_good_closes_its_room_alone_and_nothing_unstored_is_served(
    settings, database_url
):
    """One document's rows are refused (a constraint): its clients are closed (1011)
    and the document is served from storage again, without the refused edit;
    every other document goes on as if nothing happened (no 4503, no retries)."""
    async with (
        run_server(settings.replace(database_url=database_url)) as server,
        httpx.AsyncClient(timeout=TIMEOUT_S) as http,
    ):
        bad = await YClient(server.ws_url("bad")).connect()
        good = await YClient(server.ws_url("good")).connect()
        bad.text.insert(0, "kept")
        good.text.insert(0, "fine")
        await eventually(lambda: bad.is_saved() and good.is_saved())
        await _run_sql(database_url, *_refuse_rows_of(database_url, "bad"))

        bad.text.insert(len(bad.text), " refused")
        assert await bad.wait_closed(TIMEOUT_S) == CloseCode.INTERNAL_ERROR
        good.text.insert(len(good.text), " still")
        await eventually(good.is_saved, what="the other document's edit committed")
        assert good.close_code is None and not server.runtime.writer.is_failing
        # Served from storage: what was committed, not what the room had merged.
        fresh = await YClient(server.ws_url("bad")).connect()
        assert str(fresh.text) == "kept"
        shown = (await http.get(f"{server.http_url}/api/documents/bad")).json()
        assert shown["content"] == {"text": "kept"}
        assert await _stored_text(database_url, "bad") == "kept"

        await _run_sql(
            database_url,
            "DROP TRIGGER refuse_rows"
            + ("" if database_url.startswith("sqlite") else " ON updates"),
        )
        fresh.text.insert(len(fresh.text), " again")
        await eventually(fresh.is_saved, what="the document takes edits again")
        assert await _stored_text(database_url, "bad") == "kept again"
        for client in (good, fresh):
            await client.close()


@pytest.fixture
async def postgres_role_url(postgres_url: str, postgres_admin_dsn: str) -> AsyncIterator[str]:
    """The test database reached as a role of its own that owns it: not a
    superuser, so privileges apply to the server."""
    role = f"collab_role_{uuid.uuid4().hex[:10]}"
    url = make_url(postgres_url)
    admin = await asyncpg.connect(postgres_admin_dsn)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'ALTER DATABASE "{url.database}" OWNER TO "{role}"')
        yield url.set(username=role, password=None).render_as_string(hide_password=False)
    finally:
        await _run_sql(postgres_url, f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
        await _run_sql(postgres_url, f'DROP OWNED BY "{role}"')
        await admin.execute(f'DROP ROLE IF EXISTS "{role}"')
        await admin.close()


Outage = tuple[list[str], list[str]]  # the statements that cause it, and those that end it


def _outage(cause: str, role: str) -> Outage:
    if cause == "privilege revoked":
        return (
            [f'REVOKE INSERT ON updates FROM "{role}"'],
            [f'GRANT INSERT ON updates TO "{role}"'],
        )
    return (  # the table missing
        ["ALTER TABLE updates RENAME TO updates_away"],
        ["ALTER TABLE updates_away RENAME TO updates"],
    )


@pytest.mark.postgres
@pytest.mark.parametrize("cause", ["privilege revoked", "table missing"])
async def test_postgresql_refusing_every_write_is_an_outage_and_serves_nothing_unstored(
    settings, postgres_url, postgres_role_url, cause
):
    """Nothing is wrong with the edit: the database is misconfigured, and an
    operator can fix it. The edit is kept and retried, its clients hear 4503,
    and neither a joiner nor the REST API is shown it until it is committed."""
    role = make_url(postgres_role_url).username or ""
    start, end = _outage(cause, role)
    async with (
        run_server(settings.replace(database_url=postgres_role_url)) as server,
        httpx.AsyncClient(timeout=TIMEOUT_S * 3) as http,
    ):
        a = await YClient(server.ws_url("doc")).connect()
        b = await YClient(server.ws_url("doc")).connect()
        a.text.insert(0, "stored")
        await eventually(lambda: str(b.text) == "stored" and a.is_saved())
        await _run_sql(postgres_url, *start)

        a.text.insert(len(a.text), " pending")
        assert await a.wait_closed(TIMEOUT_S) == CloseCode.STORAGE_UNAVAILABLE
        assert await b.wait_closed(TIMEOUT_S) == CloseCode.STORAGE_UNAVAILABLE
        assert str(b.text) == "stored" and server.runtime.writer.is_failing
        if cause == "privilege revoked":  # (a missing table cannot be read either)
            assert await _stored_text(postgres_url, "doc") == "stored"
        # Whatever is served must be stored by the time it is: both wait.
        served: list[tuple[str, str]] = []

        async def serve(read: Callable[[], Awaitable[str]]) -> None:
            text = await read()
            served.append((text, await _stored_text(postgres_url, "doc")))

        async def join() -> str:
            joiner = await YClient(server.ws_url("doc")).connect()
            await joiner.close()
            return str(joiner.text)

        async def read() -> str:
            response = await http.get(f"{server.http_url}/api/documents/doc")
            return str(response.json()["content"]["text"])

        readers = [
            asyncio.create_task(serve(join)),
            asyncio.create_task(serve(read)),
        ]
        await _run_sql(postgres_url, *end)
        await asyncio.gather(*readers)
        assert served == [("stored pending", "stored pending")] * 2
        await eventually(lambda: not server.runtime.writer.is_failing)
