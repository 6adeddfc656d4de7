"""collab.client against a real server: sync, durability, presence, reconnecting, refusals."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from pycrdt import StickyIndex, Text

from collab.client import (
    BadDocumentName,
    ConnectionLost,
    DocumentDeleted,
    Forbidden,
    Reconnect,
    Refused,
    Session,
    TooLarge,
    Unauthorized,
    connect,
)
from collab.config import Settings
from collab.errors import CloseCode
from tests.support.server import RunningServer, run_server, server_process
from tests.support.waiting import TIMEOUT_S, eventually

SECRET = "client-test-secret-with-at-least-32-bytes"
FAST = Reconnect(initial_delay_s=0.02, max_delay_s=0.2)


def token(*documents: str, role: str = "write") -> str:
    claims = {"exp": int(time.time()) + 600, "docs": list(documents), "role": role}
    return jwt.encode(claims, SECRET, algorithm="HS256")


def root(server: RunningServer | Any) -> str:
    return f"ws://127.0.0.1:{server.port}/ws"


def content(session: Session) -> Text:
    return session.doc.get("content", type=Text)


async def test_two_sessions_edit_one_document_and_a_late_one_gets_it_all(server):
    async with connect(root(server), "notes") as ada, connect(root(server), "notes") as bob:
        content(ada).insert(0, "from ada. ")
        await eventually(lambda: str(content(bob)) == "from ada. ")
        content(bob).insert(len(content(bob)), "from bob.")
        await eventually(lambda: str(content(ada)) == "from ada. from bob.")
        await bob.saved()
    async with connect(root(server), "notes") as late:
        assert str(content(late)) == "from ada. from bob."


async def test_saved_edits_survive_kill_9_of_the_server(tmp_path):
    async with server_process(tmp_path) as process:
        async with connect(root(process), "doc", reconnect=None) as session:
            text = content(session)
            for i in range(50):
                text.insert(len(text), f"<{i}>")
            del text[0:3]  # a transaction that only deletes: no clock moves
            await session.saved()
            assert session.is_saved
            expected = str(text)
            process.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            await process.process.wait()  # type: ignore[union-attr]
            with pytest.raises(ConnectionLost):
                await session.wait_closed()
        await process.start()
        async with connect(root(process), "doc") as reader:
            assert str(content(reader)) == expected


async def test_saved_waits_for_a_deletion_to_be_committed(server):
    async with connect(root(server), "doc") as session:
        text = content(session)
        text.insert(0, "keep this, not that")
        await session.saved()
        del text[9:]
        assert not session.is_saved
        await eventually(lambda: session.is_saved, what="confirmed without asking")
        await session.saved()
    async with connect(root(server), "doc") as reader:
        assert str(content(reader)) == "keep this"


async def test_presence_shows_a_name_and_a_cursor_in_the_editors_format(server):
    async with connect(root(server), "doc") as bot, connect(root(server), "doc") as person:
        content(bot).insert(0, "hello world")
        bot.presence.set({"user": {"name": "Summariser", "color": "#0e7490"}})
        bot.presence.set_cursor("content", 6)
        me = bot.doc.client_id
        state = await eventually(lambda: person.presence.others.get(me, {}).get("cursor"))
        assert person.presence.others[me]["user"] == {"name": "Summariser", "color": "#0e7490"}
        # JSON.stringify of a Y.RelativePosition, as y-codemirror.next publishes it
        assert state["anchor"] == {
            "type": None,
            "tname": "content",
            "item": {"client": me, "clock": 6},
            "assoc": 0,
        }
        assert state["head"] == state["anchor"]
        # it sticks to its character while someone types before it
        content(person).insert(0, ">> ")
        await eventually(lambda: str(content(bot)) == ">> hello world")
        anchor = StickyIndex.from_json(state["anchor"], content(person))
        assert anchor.get_index() == len(">> hello ")

        bot.presence.set_cursor("content", len(str(content(bot))))
        await eventually(lambda: person.presence.others[me]["cursor"]["anchor"]["item"] is None)
        await bot.close()
        await eventually(lambda: me not in person.presence.others, what="presence withdrawn")


async def test_a_session_reconnects_after_a_restart_and_uploads_offline_edits(tmp_path):
    async with server_process(tmp_path) as process:
        async with connect(root(process), "doc", reconnect=FAST) as session:
            content(session).insert(0, "before. ")
            await session.saved()
            process.process.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
            await process.process.wait()  # type: ignore[union-attr]
            await eventually(lambda: not session.is_connected, what="the session notices")
            content(session).insert(len(content(session)), "offline. ")
            assert not session.is_saved
            await process.start()
            async with connect(root(process), "doc") as other:
                await eventually(lambda: "offline" in str(content(other)), what="upload")
                content(other).insert(0, "other. ")
            await session.synced()
            await session.saved()
            await eventually(lambda: str(content(session)) == "other. before. offline. ")
            assert session.stats.connections == 2
        async with connect(root(process), "doc") as reader:
            assert str(content(reader)) == "other. before. offline. "


@pytest.fixture
def auth_settings(settings: Settings) -> Settings:
    return settings.replace(auth_secret=SECRET, max_document_bytes=4000)


@pytest.fixture
async def auth_server(auth_settings: Settings) -> AsyncIterator[RunningServer]:
    async with run_server(auth_settings) as running:
        yield running


@pytest.mark.parametrize(
    ("document", "credential", "expected", "code"),
    [
        ("doc", None, Unauthorized, 4401),
        ("doc", "garbage", Unauthorized, 4401),
        ("secret", token("doc"), Forbidden, 4403),
        ("..", token("*"), BadDocumentName, 4404),
    ],
    ids=["no token", "bad token", "another document", "bad name"],
)
async def test_a_refused_connection_raises_its_exception_and_is_not_retried(
    auth_server, document, credential, expected, code
):
    session = connect(root(auth_server), document, token=credential, reconnect=FAST)
    with pytest.raises(expected) as refused:
        async with session:
            pass
    assert refused.value.close_code == code and refused.value.reason
    assert isinstance(refused.value, Refused) and refused.value.is_permanent
    assert session.stats.connections == 1, "a permanent refusal is not retried"
    assert session.error is refused.value


async def test_an_edit_past_the_document_limit_raises_too_large(auth_server):
    async with connect(root(auth_server), "doc", token=token("doc"), reconnect=FAST) as session:
        content(session).insert(0, "x" * 5000)
        with pytest.raises(TooLarge) as refused:
            await session.saved()
    assert refused.value.close_code == 4414
    assert session.stats.connections == 1


async def test_a_deleted_document_ends_the_session(auth_server):
    admin = token("*", role="admin")
    async with connect(root(auth_server), "doc", token=token("doc"), reconnect=FAST) as session:
        content(session).insert(0, "soon gone")
        await session.saved()
        async with httpx.AsyncClient() as http:
            response = await http.delete(
                f"{auth_server.http_url}/api/documents/doc",
                headers={"Authorization": f"Bearer {admin}"},
                timeout=TIMEOUT_S,
            )
        assert response.status_code in (200, 204), response.text
        with pytest.raises(DocumentDeleted):
            await session.wait_closed()
    assert session.stats.connections == 1


async def test_a_fresh_token_is_asked_for_at_each_connection(auth_server):
    issued: list[str] = []

    def fresh() -> str:
        issued.append(token("doc"))
        return issued[-1]

    async with connect(root(auth_server), "doc", token=fresh, reconnect=FAST) as session:
        room = auth_server.runtime.registry.rooms["doc"]
        for peer in list(room.peers.values()):
            peer.close(CloseCode.SERVICE_RESTART, "restart")  # transient: reconnect
        await eventually(lambda: session.stats.connections == 2 and session.is_synced)
    assert len(issued) == 2
