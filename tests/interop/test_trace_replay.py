"""An honest fast writer, the real npm y-websocket client, with default settings.

Scripts, imports, agents and offline clients flushing a backlog write as fast as
their socket takes it. The server paces such a writer (it stops reading its
socket while storage catches up) instead of closing it: the replay of 20,000
edits of the shared editing trace ends with the exact text, on one connection,
with no close.

The trace is the benchmark's (bench/scenarios.py): `../shared/data/editing-traces/`
beside the repository, as CI lays it out, or the benchmark's own path. A missing
trace fails the test, never skips it.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import httpx
import pytest

from bench.scenarios import TRACE_PATH
from tests.support.nodeclient import REPO_ROOT, NodeFactory, require_node
from tests.support.server import RunningServer, metric_value
from tests.support.waiting import TIMEOUT_S, eventually
from tests.support.yclient import YClient

pytestmark = pytest.mark.node

TRACE_NAME = "automerge-paper.json.gz"
REPLAYED_EDITS = 20_000


def trace_path() -> Path:
    for candidate in (
        REPO_ROOT.parent / "shared" / "data" / "editing-traces" / TRACE_NAME,
        Path(TRACE_PATH),
    ):
        if candidate.is_file():
            return candidate
    pytest.fail(f"the editing trace {TRACE_NAME} is missing: expected ../shared beside the repo")


def text_after(path: Path, edits: int) -> str:
    """The trace's text after its first `edits` txns, by plain string edits."""
    trace = json.loads(gzip.decompress(path.read_bytes()))
    text: str = trace["startContent"]
    for txn in trace["txns"][:edits]:
        for position, deleted, inserted in txn["patches"]:
            text = text[:position] + inserted + text[position + deleted :]
    return text


async def test_a_full_speed_trace_replay_completes_on_one_connection_with_defaults(
    connect, node_client: NodeFactory, server: RunningServer
):
    require_node()
    assert server.settings.rate_limit_per_s > 0, "the defaults, rate limit included"
    path = trace_path()
    expected = text_after(path, REPLAYED_EDITS)
    observer: YClient = await connect("trace")

    writer = await node_client(
        "trace", replay=str(path), replay_count=REPLAYED_EDITS, hold_stdin=True
    )
    # Its own copy, once every edit is handed to the socket (a replay takes a while).
    assert (await writer.result(timeout_s=TIMEOUT_S * 6))["text"] == expected
    await eventually(
        lambda: str(observer.text) == expected,
        timeout_s=TIMEOUT_S * 6,
        what="every edit reached the other client",
    )
    # No close, so no reconnect: the writer's one connection and the observer's.
    # (`finish` also fails on any close the Node client saw: it logs them on stderr.)
    await writer.finish()
    metrics = server.runtime.metrics
    assert metric_value(metrics, "collab_connections_opened_total") == 2
    for code in ("4029", "4004", "1011"):
        assert metric_value(metrics, "collab_connections_closed_total", code=code) == 0
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        stored = (await http.get("/api/documents/trace")).json()["content"]["text"]
    assert stored == expected
