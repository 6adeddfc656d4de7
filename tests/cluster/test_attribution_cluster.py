"""Attribution across two `collab serve` processes on one PostgreSQL and Redis:
authors on different processes are blamed exactly on both, and a client id
claimed through one process cannot be written under through the other."""

from __future__ import annotations

import time
from typing import Any

import httpx
import jwt
import pytest
from pycrdt import Doc, Text, create_update_message

from collab.errors import CloseCode
from tests.cluster.test_cluster import StartCluster, _connect, clients, cluster  # noqa: F401
from tests.support.server import ServerProcess
from tests.support.waiting import eventually
from tests.support.yclient import YClient

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

SECRET = "attribution-cluster-secret-with-32-bytes+"


def _token(sub: str) -> str:
    claims = {"exp": int(time.time()) + 600, "docs": ["*"], "role": "write", "sub": sub}
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def _blame(process: ServerProcess) -> list[tuple[str, str | None]]:
    async with httpx.AsyncClient(base_url=process.http_url) as http:
        response = await http.get(
            "/api/documents/doc/blame", headers={"Authorization": f"Bearer {_token('reader')}"}
        )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return [(run["text"], run["author"]) for run in body["text_roots"].get("text", [])]


def _per_char(runs: list[tuple[str, str | None]]) -> list[tuple[str, str | None]]:
    """Runs compared character by character: how runs of one author merge is
    not the point (one session's pieces merge, two sessions' do not)."""
    return [(char, author) for text, author in runs for char in text]


async def test_authors_on_two_processes_are_blamed_exactly_on_both(
    cluster: StartCluster,  # noqa: F811
    clients: list[YClient],  # noqa: F811
) -> None:
    a, b = await cluster(2, env={"COLLAB_AUTH_SECRET": SECRET})
    alice = await _connect(clients, f"{a.ws_url('doc')}?token={_token('alice')}")
    bob = await _connect(clients, f"{b.ws_url('doc')}?token={_token('bob')}")
    carol = await _connect(clients, f"{b.ws_url('doc')}?token={_token('carol')}")
    alice.text.insert(0, "from a. ")
    await eventually(lambda: str(bob.text) == "from a. ", what="bob hears alice")
    # Concurrently: bob appends on process b while carol prepends on b too and
    # alice appends on a.
    bob.text.insert(len(bob.text), "from b.")
    carol.text.insert(0, ">> ")
    alice.text.insert(len(alice.text), "|")
    final = ">> from a. from b.|"

    def converged() -> bool:
        return all(str(c.text) in (final, ">> from a. |from b.") for c in (alice, bob, carol))

    await eventually(converged, what="converged")
    assert str(alice.text) == str(bob.text) == str(carol.text)
    await eventually(lambda: all(c.is_saved() for c in (alice, bob, carol)), what="saved")
    text = str(alice.text)
    tail = (
        [("from b.", "bob"), ("|", "alice")]
        if text == final
        else [("|", "alice"), ("from b.", "bob")]
    )
    expected = [(">> ", "carol"), ("from a. ", "alice"), *tail]
    for process in (a, b):

        async def blamed(process: ServerProcess = process) -> bool:
            assert _per_char(await _blame(process)) == _per_char(expected)
            return True

        await eventually(blamed, what=f"blame on {process.http_url}")

    # Alice's client id, claimed on process a, is hers on process b too.
    forged: Doc = Doc(client_id=alice.doc.client_id)
    forged.get("text", type=Text).insert(0, "x" * 8 + "forged")
    mallory = await _connect(clients, f"{b.ws_url('doc')}?token={_token('mallory')}")
    await mallory.send_raw(create_update_message(forged.get_update()))
    assert await mallory.wait_closed() == CloseCode.FOREIGN_CLIENT_ID
    assert "forged" not in str(alice.text)
