"""Several server processes sharing documents through Redis and PostgreSQL.

Real `collab serve` subprocesses with --redis-url on a fresh PostgreSQL database
each test, real pycrdt and Node y-websocket clients spread across them (some
through a plain round-robin TCP balancer, as in a deployment), kill -9, a Redis
of the test's own killed and restarted, a process paused past the stream's
trimmed tail.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path

import httpx
import jwt
import pytest
from pycrdt import Text

from collab.errors import CloseCode
from collab.rooms.loading import build_doc
from collab.storage.sql_store import SqlStore
from tests.integration.test_auth import refusal
from tests.integration.test_snapshots_cli import cli, cli_json
from tests.support.balancer import balancer
from tests.support.nodeclient import node_clients, require_node
from tests.support.server import ServerProcess
from tests.support.services import RedisServer
from tests.support.waiting import TIMEOUT_S, eventually
from tests.support.yclient import YClient

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

HEARTBEAT_INTERVAL_S = 0.3
HEARTBEAT_TTL_S = 1.5

StartCluster = Callable[..., Awaitable[list[ServerProcess]]]


@pytest.fixture
async def cluster(
    tmp_path: Path, postgres_url: str, shared_redis_url: str, redis_prefix: str
) -> AsyncIterator[StartCluster]:
    """`await cluster(n)` starts n processes on one database and one Redis prefix."""
    processes: list[ServerProcess] = []

    async def start(
        count: int, *, redis_url: str = shared_redis_url, env: Mapping[str, str] | None = None
    ) -> list[ServerProcess]:
        started = []
        for _ in range(count):
            process = ServerProcess(
                postgres_url,
                tmp_path / f"server{len(processes)}.log",
                args=["--redis-url", redis_url],
                env={
                    "COLLAB_REDIS_PREFIX": redis_prefix,
                    "COLLAB_CLUSTER_HEARTBEAT_INTERVAL_S": str(HEARTBEAT_INTERVAL_S),
                    "COLLAB_CLUSTER_HEARTBEAT_TTL_S": str(HEARTBEAT_TTL_S),
                    "COLLAB_JANITOR_INTERVAL_S": "0.05",
                    **(env or {}),
                },
            )
            processes.append(process)
            await process.start()
            started.append(process)
        return started

    yield start
    for process in processes:
        if process.process is not None and process.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.process.send_signal(signal.SIGCONT)
            process.process.kill()
            await process.process.wait()
    for process in processes:
        log = process.log_path.read_text() if process.log_path.exists() else ""
        assert "Traceback" not in log, f"{process.log_path.name}:\n{log}"


@pytest.fixture
async def clients() -> AsyncIterator[list[YClient]]:
    opened: list[YClient] = []
    yield opened
    for client in opened:
        await client.close()


async def _connect(clients: list[YClient], url: str, **kwargs: object) -> YClient:
    client = YClient(url, **kwargs)  # type: ignore[arg-type]
    clients.append(client)
    return await client.connect()


def _tokens(text: str) -> list[str]:
    return re.findall(r"<[^<>]*>", text)


async def _write(client: YClient, tag: str, count: int, *, pause_s: float = 0.002) -> None:
    for i in range(count):
        client.text.insert(len(client.text), f"<{tag}.{i}>")
        await asyncio.sleep(pause_s)


async def _stored_text(database_url: str, document: str) -> str:
    store = SqlStore(database_url)
    await store.open(migrate=False)
    try:
        return str(build_doc(await store.load(document), document).get("text", type=Text))
    finally:
        await store.close()


async def _metric(process: ServerProcess, name: str) -> float:
    async with httpx.AsyncClient() as http:
        body = (await http.get(f"{process.http_url}/metrics")).text
    values = [float(line.split()[-1]) for line in body.splitlines() if line.startswith(name)]
    return sum(values)


def _same_text(clients: list[YClient]) -> bool:
    return len({str(c.text) for c in clients}) == 1


# -- convergence -------------------------------------------------------------


async def test_two_processes_share_text_and_presence_with_node_and_pycrdt(cluster, clients):
    require_node()
    a, b = await cluster(2)
    py_a = await _connect(clients, a.ws_url("doc"))
    py_b = await _connect(clients, b.ws_url("doc"))
    await py_a.set_presence({"user": {"name": "py-a"}})
    async with contextlib.asynccontextmanager(node_clients)(b) as node_client:
        node = await node_client(
            "doc",
            insert="<node>",
            presence="node",
            expect_contains=["<py-a>", "<py-b>"],
            expect_presence=["py-a", "py-b"],
            hold_stdin=True,
        )
        py_a.text.insert(0, "<py-a>")
        py_b.text.insert(0, "<py-b>")
        await py_b.set_presence({"user": {"name": "py-b"}})
        seen_by_node = await node.result()
        assert {"py-a", "py-b"} <= {s["user"]["name"] for s in seen_by_node["awarenessStates"]}
        await eventually(
            lambda: _same_text([py_a, py_b]) and "<node>" in str(py_a.text), what="converged"
        )
        names_on_a = lambda: {s["user"]["name"] for s in py_a.presence_of_others().values()}  # noqa: E731
        await eventually(lambda: names_on_a() == {"py-b", "node"}, what="presence across")
        await node.finish()
    # The Node client left (from process b): its presence is gone on a as well.
    await eventually(lambda: names_on_a() == {"py-b"}, what="node's presence removed on a")
    assert sorted(_tokens(str(py_a.text))) == ["<node>", "<py-a>", "<py-b>"]


async def test_three_processes_with_clients_spread_converge(cluster, clients):
    processes = await cluster(3)
    writers = [await _connect(clients, p.ws_url("doc")) for p in processes for _ in range(2)]
    await asyncio.gather(*(_write(w, f"w{n}", 40) for n, w in enumerate(writers)))
    await eventually(lambda: _same_text(writers), what="all six converge")
    text = str(writers[0].text)
    assert len(_tokens(text)) == 6 * 40 and len(set(_tokens(text))) == 6 * 40
    # Every process serves the same document to a newcomer.
    for process in processes:
        late = await _connect(clients, process.ws_url("doc"))
        assert str(late.text) == text


async def test_a_process_joining_mid_edit_loads_with_no_gap(cluster, clients):
    (a,) = await cluster(1)
    author = await _connect(clients, a.ws_url("doc"))
    writing = asyncio.create_task(_write(author, "a", 300, pause_s=0.005))
    await eventually(lambda: len(_tokens(str(author.text))) > 30, what="writing under way")
    (b,) = await cluster(1)  # loads the document while updates keep coming
    reader = await _connect(clients, b.ws_url("doc"))
    await writing
    await eventually(lambda: _same_text([author, reader]), what="the late process converged")
    assert len(_tokens(str(reader.text))) == 300


# -- failures ----------------------------------------------------------------


async def test_kill_9_of_one_process_mid_edit_loses_nothing_anyone_saw(
    cluster, clients, postgres_url
):
    """Clients reach three processes through a round-robin balancer; one process is
    killed mid-edit; its clients reconnect through the balancer to the others."""
    require_node()
    processes = await cluster(3)
    async with (
        balancer([p.port for p in processes]) as lb,
        contextlib.asynccontextmanager(node_clients)(lb) as node_client,
    ):
        # Round robin: connection k lands on process k % 3; process 0 gets killed.
        on_0 = await _connect(clients, lb.ws_url("doc"))
        on_1 = await _connect(clients, lb.ws_url("doc"))
        on_2 = await _connect(clients, lb.ws_url("doc"))
        writing = [
            asyncio.create_task(_write(on_0, "x", 400, pause_s=0.003)),
            asyncio.create_task(_write(on_2, "y", 400, pause_s=0.003)),
        ]
        node = await node_client(  # connection 3: on process 0 too
            "doc",
            insert="<node>",
            expect_contains=["<after-kill>"],
            hold_stdin=True,
            timeout_ms=int(TIMEOUT_S * 3000),
        )
        await eventually(lambda: "<node>" in str(on_1.text), what="node client joined")
        witness = await _connect(clients, lb.ws_url("doc"))  # connection 4: process 1
        assert await _live_connections(processes[0]) == 2
        await eventually(lambda: len(_tokens(str(witness.text))) > 100, what="edits flowing")
        processes[0].process.kill()  # type: ignore[union-attr]
        await processes[0].process.wait()  # type: ignore[union-attr]
        seen = set(_tokens(str(witness.text)))
        await asyncio.gather(*writing)
        # The killed process's pycrdt client reconnects (with its Doc) through the
        # balancer, as y-websocket does on its own.
        await on_0.wait_closed()
        moved = await _connect(clients, lb.ws_url("doc"), doc=on_0.doc)
        moved.text.insert(len(moved.text), "<after-kill>")
        result = await node.result()  # the Node client reconnected and saw it
        assert "<after-kill>" in result["text"]
        everyone = [on_1, on_2, witness, moved]
        await eventually(lambda: _same_text(everyone), what="survivors converge")
        final = str(witness.text)
        assert seen <= set(_tokens(final)), "an update a client had seen was lost"
        for tag in ("x", "y"):
            assert {f"<{tag}.{i}>" for i in range(400)} <= set(_tokens(final))
        assert "<node>" in final and len(_tokens(final)) == len(set(_tokens(final)))
        assert node.process.stdin is not None
        node.process.stdin.close()
        _, stderr = await asyncio.wait_for(node.process.communicate(), TIMEOUT_S * 2)
        assert node.process.returncode == 0
        # Its only complaint: the killed process dropped its connection.
        assert all("code 1006" in line for line in stderr.decode().splitlines()), stderr
    # Durable, not just in memory: storage holds exactly what the clients converged on.
    await eventually(lambda: _writes_settled(processes[1:]), what="writes committed")
    assert await _stored_text(postgres_url, "doc") == final


async def _live_connections(process: ServerProcess) -> int:
    async with httpx.AsyncClient() as http:
        documents = (await http.get(f"{process.http_url}/api/documents")).json()
    return sum(d["live_connections"] for d in documents)


async def _writes_settled(processes: list[ServerProcess]) -> bool:
    return all([await _metric(p, "collab_pending_writes") == 0 for p in processes])


async def test_redis_restarted_mid_session_misses_no_update(cluster, clients, tmp_path):
    redis = RedisServer(tmp_path / "own-redis")
    redis.start()
    try:
        a, b = await cluster(2, redis_url=redis.url)
        on_a = await _connect(clients, a.ws_url("doc"))
        on_b = await _connect(clients, b.ws_url("doc"))
        await _write(on_a, "before", 20)
        await eventually(lambda: _same_text([on_a, on_b]), what="converged before")
        redis.stop()  # kill -9: every stream is gone with it
        await _write(on_a, "during-a", 20)
        await _write(on_b, "during-b", 20)
        # Local relays go on meanwhile: each side's own edits come back durable.
        await eventually(lambda: on_a.is_saved() and on_b.is_saved())
        redis.start()
        await eventually(lambda: _same_text([on_a, on_b]), what="converged after the restart")
        await _write(on_b, "after", 20)
        await eventually(lambda: _same_text([on_a, on_b]), what="fan-out works again")
        assert len(_tokens(str(on_a.text))) == 80
        assert await _metric(a, "collab_cluster_catch_ups_total") >= 1
        assert await _metric(b, "collab_cluster_catch_ups_total") >= 1
    finally:
        redis.stop()


def _judged(process: ServerProcess) -> int:
    """How many times the process has started judging the others' liveness (once
    heartbeats had been observable for a full TTL)."""
    return process.log_path.read_text().count("judging the other processes' liveness")


def _names(client: YClient) -> set[str]:
    return {state["user"]["name"] for state in client.presence_of_others().values()}


async def test_a_redis_restart_changes_nobodys_presence(cluster, clients, tmp_path):
    """Heartbeats lost with Redis are no death: no process takes another for dead,
    no cursor goes away, a client joining after the restart sees everyone, and a
    change made while Redis was down reaches the other process afterwards."""
    redis = RedisServer(tmp_path / "own-redis")
    redis.start()
    try:
        a, b = await cluster(2, redis_url=redis.url)
        on_a = await _connect(clients, a.ws_url("doc"))
        on_b = await _connect(clients, b.ws_url("doc"))
        await on_a.set_presence({"user": {"name": "on-a"}})
        await on_b.set_presence({"user": {"name": "on-b"}})
        await eventually(lambda: _names(on_a) == {"on-b"} and _names(on_b) == {"on-a"})
        removed: list[int] = []
        for client in (on_a, on_b):
            client.awareness.observe(
                lambda topic, change: (
                    removed.extend(change[0]["removed"]) if topic == "change" else None
                )
            )
        judged_before = [_judged(a), _judged(b)]
        redis.stop()  # kill -9: every heartbeat key and stream is gone with it
        await on_b.set_presence({"user": {"name": "on-b, moved while redis was down"}})
        redis.start()
        # Either a process is taken for dead (what must not happen), or both
        # have watched heartbeats for a full TTL and judge again: nobody died.
        await eventually(
            lambda: removed or (_judged(a) > judged_before[0] and _judged(b) > judged_before[1]),
            timeout_s=TIMEOUT_S * 2,
            what="liveness judged again after the restart",
        )
        assert removed == [], "a live process's clients were removed"
        assert "stopped its heartbeat" not in a.log_path.read_text() + b.log_path.read_text()
        late = await _connect(clients, a.ws_url("doc"))
        await eventually(
            lambda: _names(late) == {"on-a", "on-b, moved while redis was down"},
            what="a joiner after the restart sees everyone, as they are now",
        )
        await eventually(lambda: _names(on_a) == {"on-b, moved while redis was down"})
        assert removed == []
    finally:
        redis.stop()


async def test_a_process_behind_the_trimmed_stream_catches_up(cluster, clients):
    a, b = await cluster(2, env={"COLLAB_REDIS_STREAM_MAX_ENTRIES": "10"})
    author = await _connect(clients, a.ws_url("doc"))
    reader = await _connect(clients, b.ws_url("doc"))
    await _write(author, "warm", 5)
    await eventually(lambda: _same_text([author, reader]))
    b.process.send_signal(signal.SIGSTOP)  # type: ignore[union-attr]
    try:
        # Paced, so that they are many stream entries (what arrives in one tick is one).
        await _write(author, "while-b-sleeps", 600)
        await eventually(author.is_saved, what="a committed them all")
    finally:
        b.process.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    await eventually(lambda: _same_text([author, reader]), what="b caught up")
    assert len(_tokens(str(reader.text))) == 605
    assert await _metric(b, "collab_cluster_catch_ups_total") >= 1


async def test_presence_of_a_killed_process_clients_goes_within_the_heartbeat_ttl(cluster, clients):
    a, b = await cluster(2)
    on_a = await _connect(clients, a.ws_url("doc"))
    on_b = await _connect(clients, b.ws_url("doc"))
    await on_a.set_presence({"user": {"name": "on-a"}})
    await on_b.set_presence({"user": {"name": "on-b"}})
    await eventually(lambda: on_b.doc.client_id in on_a.presence_of_others())
    await eventually(lambda: on_a.doc.client_id in on_b.presence_of_others())
    a.process.kill()  # type: ignore[union-attr]
    await a.process.wait()  # type: ignore[union-attr]
    started = asyncio.get_running_loop().time()
    await eventually(lambda: on_a.doc.client_id not in on_b.presence_of_others())
    elapsed = asyncio.get_running_loop().time() - started
    print(f"presence of the killed process's client removed after {elapsed:.2f}s")


# -- compaction, versions, deletion ----------------------------------------


async def test_two_processes_compacting_one_document_lose_nothing(cluster, clients, postgres_url):
    processes = await cluster(2, env={"COLLAB_COMPACT_AFTER_UPDATES": "25"})
    writers = [await _connect(clients, p.ws_url("doc")) for p in processes for _ in range(2)]
    await asyncio.gather(*(_write(w, f"w{n}", 150, pause_s=0.001) for n, w in enumerate(writers)))
    await eventually(lambda: _same_text(writers), what="converged")
    expected = str(writers[0].text)
    store = SqlStore(postgres_url)
    await store.open(migrate=False)
    try:
        info = await eventually(lambda: _compacted(store), what="the log compacted")
        assert info.snapshots >= 1
        # Whatever the interleaving of the two compactors: the newest snapshot plus
        # the rows still in the log hold every update.
        assert str(build_doc(await store.load("doc"), "doc").get("text", type=Text)) == expected
    finally:
        await store.close()
    declined = [await _metric(p, "collab_snapshots_declined_total") for p in processes]
    print(f"snapshots declined (conflict or busy) per process: {declined}")
    late = await _connect(clients, processes[1].ws_url("doc"))
    assert str(late.text) == expected


async def _compacted(store: SqlStore):
    info = await store.document_info("doc")
    return info if info and info.snapshots and info.log_entries < 100 else None


async def test_restore_from_one_process_reaches_clients_on_another(cluster, clients):
    a, b = await cluster(2)
    on_a = await _connect(clients, a.ws_url("doc"))
    on_b = await _connect(clients, b.ws_url("doc"))
    on_a.text.insert(0, "version one")
    await eventually(lambda: str(on_b.text) == "version one")
    async with httpx.AsyncClient() as http:
        saved = await http.post(f"{a.http_url}/api/documents/doc/snapshots", json={"label": "v1"})
        assert saved.status_code == 201
        on_b.text.insert(len(on_b.text), ", then more")
        await eventually(lambda: str(on_a.text) == "version one, then more")
        restored = await http.post(
            f"{b.http_url}/api/documents/doc/snapshots/{saved.json()['id']}/restore"
        )
        assert restored.status_code == 200, restored.text
        await eventually(lambda: str(on_a.text) == str(on_b.text) == "version one")
        versions = (await http.get(f"{a.http_url}/api/documents/doc/snapshots")).json()
        assert [v["kind"] for v in versions["snapshots"]][:2] == ["pre-restore", "named"]


async def test_delete_on_one_process_closes_the_clients_of_another(cluster, clients):
    a, b = await cluster(2)
    on_b = await _connect(clients, b.ws_url("doc"))
    on_b.text.insert(0, "soon gone")
    await eventually(lambda: on_b.received_updates == 1)
    async with httpx.AsyncClient() as http:
        assert (await http.delete(f"{a.http_url}/api/documents/doc")).status_code == 204
    assert await on_b.wait_closed(TIMEOUT_S) == CloseCode.DOCUMENT_DELETED
    fresh = await _connect(clients, b.ws_url("doc"))
    assert str(fresh.text) == ""


async def test_a_revocation_on_one_process_closes_its_connections_on_the_others(cluster, clients):
    secret = "cluster-test-secret-that-is-32-bytes+"

    def token(**claims: object) -> str:
        base = {"exp": int(time.time()) + 600, "docs": ["*"], "role": "write"}
        return jwt.encode({**base, **claims}, secret, algorithm="HS256")

    a, b = await cluster(2, env={"COLLAB_AUTH_SECRET": secret})
    ada = token(jti="t-ada", sub="ada")
    ada_on_a = await _connect(clients, f"{a.ws_url('doc')}?token={ada}")
    bob_on_b = await _connect(clients, f"{b.ws_url('doc')}?token={token(sub='bob')}")
    carol_on_a = await _connect(clients, f"{a.ws_url('doc')}?token={token(sub='carol')}")
    admin = {"Authorization": f"Bearer {token(role='admin', sub='root')}"}
    async with httpx.AsyncClient(headers=admin) as http:
        # Revoked on b: a's connection holding the token closes at once.
        response = await http.post(f"{b.http_url}/api/tokens/revocations", json={"jti": "t-ada"})
        assert response.status_code == 201, response.text
        assert await ada_on_a.wait_closed(TIMEOUT_S) == CloseCode.UNAUTHORIZED
        assert ada_on_a.close_reason == "token revoked"
        for process in (a, b):
            assert await refusal(f"{process.ws_url('doc')}?token={ada}") == (4401, "token revoked")
        # And the other way round, by subject.
        response = await http.post(f"{a.http_url}/api/tokens/revocations", json={"subject": "bob"})
        assert response.status_code == 201, response.text
        assert await bob_on_b.wait_closed(TIMEOUT_S) == CloseCode.UNAUTHORIZED
        listed = (await http.get(f"{b.http_url}/api/tokens/revocations")).json()["revocations"]
        assert [(r["kind"], r["value"]) for r in listed] == [("jti", "t-ada"), ("subject", "bob")]
    carol_on_a.text.insert(0, "carol stays")
    await eventually(lambda: carol_on_a.received_updates == 1)
    assert carol_on_a.close_code is None


# -- who may share a database ------------------------------------------------


async def test_only_servers_of_one_cluster_share_a_database(
    cluster, postgres_url, tmp_path, shared_redis_url
):
    (member,) = await cluster(1)
    loner = ServerProcess(postgres_url, tmp_path / "loner.log")
    with pytest.raises(AssertionError):
        await loner.start()  # it exits instead of becoming healthy
    assert "run every server with --redis-url" in loner.log_path.read_text()
    other = ServerProcess(
        postgres_url,
        tmp_path / "other-cluster.log",
        args=["--redis-url", shared_redis_url],
        env={"COLLAB_REDIS_PREFIX": "some-other-cluster:"},
    )
    with pytest.raises(AssertionError):
        await other.start()
    assert "give every server the same --redis-url" in other.log_path.read_text()
    assert member.process is not None and member.process.returncode is None


async def test_snapshots_cli_goes_through_any_live_server_of_the_cluster(
    cluster, clients, postgres_url
):
    a, b = await cluster(2)
    on_a = await _connect(clients, a.ws_url("doc"))
    on_b = await _connect(clients, b.ws_url("doc"))
    on_a.text.insert(0, "keep this")
    await eventually(lambda: str(on_b.text) == "keep this")
    saved = await cli_json("save", "doc", "--label", "good", "--database", postgres_url)
    on_b.text.insert(len(on_b.text), " and not this")
    await eventually(lambda: str(on_a.text) == "keep this and not this")
    code, _, err = await cli("restore", "doc", str(saved["id"]), "--database", postgres_url)
    assert code == 0 and "going through its API" in err, err
    await eventually(lambda: str(on_a.text) == str(on_b.text) == "keep this")
