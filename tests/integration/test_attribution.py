"""Who wrote what, against the real server: token subjects and announced names on
real WebSocket clients, blame and activity over REST, through compaction, a
restart and a restore, and a client forging another author's client id."""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from pycrdt import Doc, Map, Text, create_update_message

from collab.config import Settings
from collab.errors import CloseCode
from tests.support.server import RunningServer, run_server, server_process
from tests.support.waiting import eventually
from tests.support.yclient import YClient, read_text

SECRET = "attribution-test-secret-with-32-bytes+"


def token(sub: str, role: str = "write") -> str:
    claims = {"exp": int(time.time()) + 600, "docs": ["*"], "role": role, "sub": sub}
    return jwt.encode(claims, SECRET, algorithm="HS256")


Join = Callable[..., Awaitable[YClient]]


@pytest.fixture
def tokened(settings: Settings) -> Settings:
    return settings.replace(auth_secret=SECRET)


async def _join(server: RunningServer, clients: list[YClient], sub: str, **kw: Any) -> YClient:
    client = YClient(f"{server.ws_url('doc')}?token={token(sub)}", doc=kw.pop("doc", None))
    clients.append(client)
    return await client.connect(**kw)


@pytest.fixture
async def clients() -> AsyncIterator[list[YClient]]:
    made: list[YClient] = []
    yield made
    for client in made:
        await client.close()


async def _get(server: RunningServer, path: str, sub: str = "reader", **params: Any) -> Any:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        response = await http.get(
            path, params=params, headers={"Authorization": f"Bearer {token(sub, 'admin')}"}
        )
    assert response.status_code == 200, response.text
    return response.json()


async def _post(server: RunningServer, path: str, body: dict[str, Any], sub: str) -> Any:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        response = await http.post(
            path, json=body, headers={"Authorization": f"Bearer {token(sub, 'admin')}"}
        )
    assert response.status_code in (200, 201), response.text
    return response.json()


def _runs(blame: dict[str, Any], root: str = "text") -> list[tuple[str, str | None]]:
    return [(run["text"], run["author"]) for run in blame["text_roots"].get(root, [])]


async def _blame_is(server: RunningServer, expected: list[tuple[str, str | None]]) -> None:
    async def check() -> bool:
        return _runs(await _get(server, "/api/documents/doc/blame")) == expected

    await eventually(check, what=f"blame {expected}")


async def test_blame_names_each_token_subject_exactly_after_compaction_and_restart(
    tokened: Settings, clients: list[YClient]
) -> None:
    async with run_server(tokened) as server:
        alice = await _join(server, clients, "alice")
        bob = await _join(server, clients, "bob")
        carol = await _join(server, clients, "carol")
        alice.text.insert(0, "hello ")
        await eventually(lambda: str(bob.text) == "hello ", what="bob sees alice")
        bob.text.insert(6, "world")
        carol.text.insert(0, ">> ")  # concurrent with bob's
        await eventually(lambda: str(alice.text) == ">> hello world", what="converged")
        await eventually(lambda: all(c.is_saved() for c in clients), what="saved")
        expected = [(">> ", "carol"), ("hello ", "alice"), ("world", "bob")]
        await _blame_is(server, expected)
        # A named version compacts the log: attribution is not in the log rows.
        await _post(server, "/api/documents/doc/snapshots", {"label": "v1"}, "alice")
        assert await server.runtime.store.document_info("doc") is not None
        await _blame_is(server, expected)
        runs = (await _get(server, "/api/documents/doc/blame"))["text_roots"]["text"]
        assert all(run["verified"] and run["at"] for run in runs)
        for client in clients:
            await client.close()
    async with run_server(tokened) as server:
        await _blame_is(server, expected)


async def test_an_update_under_another_authors_client_id_is_refused_with_4409(
    tokened: Settings, clients: list[YClient]
) -> None:
    async with run_server(tokened) as server:
        alice = await _join(server, clients, "alice")
        alice.text.insert(0, "mine")
        await eventually(alice.is_saved, what="alice saved")
        # A client made by hand: its content is created under alice's client id
        # (a Yjs client that hears its own id changes it, so this takes intent).
        # It continues her clock, as her own next edit would (an update that
        # starts past clock 0, like nearly every real one).
        forged: Doc = Doc(client_id=alice.doc.client_id)
        forged.apply_update(alice.doc.get_update())
        known = forged.get_state()
        forged.get("text", type=Text).insert(0, "not ")
        forger = await _join(server, clients, "mallory")
        await forger.send_raw(create_update_message(forged.get_update(known)))
        assert await forger.wait_closed() == CloseCode.FOREIGN_CLIENT_ID
        await _blame_is(server, [("mine", "alice")])
        # Deleting someone else's text is an ordinary edit.
        bob = await _join(server, clients, "bob")
        del bob.text[0:2]
        await _blame_is(server, [("ne", "alice")])
        assert bob.close_code is None


async def test_activity_lists_sessions_per_author_and_versions_newest_first(
    tokened: Settings, clients: list[YClient]
) -> None:
    async with run_server(tokened) as server:
        alice = await _join(server, clients, "alice")
        alice.text.insert(0, "abc")
        await eventually(alice.is_saved, what="alice saved")
        await _post(server, "/api/documents/doc/snapshots", {"label": "first"}, "alice")
        bob = await _join(server, clients, "bob")
        bob.text.insert(3, "defg")
        await eventually(bob.is_saved, what="bob saved")

        async def bobs_session_is_listed() -> list[dict[str, Any]]:
            events: list[dict[str, Any]] = (await _get(server, "/api/documents/doc/activity"))[
                "events"
            ]
            return events if events and events[0].get("author") == "bob" else []

        events = await eventually(bobs_session_is_listed, what="bob's session")
        kinds = [(e["kind"], e.get("author")) for e in events]
        assert kinds == [("session", "bob"), ("version", "alice"), ("session", "alice")]
        assert events[0]["inserted"] == 4 and events[0]["verified"] is True
        assert events[2]["inserted"] == 3
        only_alice = await _get(server, "/api/documents/doc/activity", author="alice")
        assert [e["kind"] for e in only_alice["events"]] == ["version", "session"]
        first_page = await _get(server, "/api/documents/doc/activity", limit=1)
        assert len(first_page["events"]) == 1 and first_page["next_before"]
        second = await _get(
            server, "/api/documents/doc/activity", limit=5, before=first_page["next_before"]
        )
        assert [e["kind"] for e in second["events"]] == ["version", "session"]


async def test_an_open_server_attributes_anonymous_with_the_announced_name(
    server: RunningServer, connect: Callable[..., Awaitable[YClient]]
) -> None:
    client = await connect("doc")
    await client.set_presence({"user": {"name": "Ada", "color": "#112233"}})
    await eventually(lambda: server.runtime.registry.rooms["doc"].awareness.states)
    client.text.insert(0, "note")
    await eventually(client.is_saved, what="saved")
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        runs = (await http.get("/api/documents/doc/blame")).json()["text_roots"]["text"]
    assert [(r["text"], r["author"], r["name"], r["verified"]) for r in runs] == [
        ("note", "anonymous", "Ada", False)
    ]


async def test_deleted_text_brought_back_by_a_restore_keeps_its_authors(
    tokened: Settings, clients: list[YClient]
) -> None:
    async with run_server(tokened) as server:
        alice = await _join(server, clients, "alice")
        carol = await _join(server, clients, "carol")
        alice.text.insert(0, "keep ")
        await eventually(lambda: str(carol.text) == "keep ", what="carol sees alice")
        carol.text.insert(5, "this")
        await eventually(lambda: alice.is_saved() and carol.is_saved(), what="saved")
        await eventually(lambda: str(alice.text) == "keep this", what="alice sees carol")
        version = await _post(server, "/api/documents/doc/snapshots", {"label": "v"}, "alice")
        bob = await _join(server, clients, "bob")
        del bob.text[0:9]  # bob deletes everything
        bob.text.insert(0, "ZZ")
        await eventually(bob.is_saved, what="saved")
        await _blame_is(server, [("ZZ", "bob")])
        await _post(server, f"/api/documents/doc/snapshots/{version['id']}/restore", {}, "root")
        await eventually(lambda: str(alice.text) == "keep this", what="restored")
        # The restore re-creates the text as new items, but it is the same text
        # of the same version: it keeps who wrote it.
        await _blame_is(server, [("keep ", "alice"), ("this", "carol")])
        events = (await _get(server, "/api/documents/doc/activity"))["events"]
        restores = [e for e in events if e.get("origin") == "restore"]
        assert restores and restores[0]["author"] == "root"
        # Compacted and reloaded, the same.
        await _post(server, "/api/documents/doc/snapshots", {"label": "after"}, "root")
        await _blame_is(server, [("keep ", "alice"), ("this", "carol")])


async def test_a_burst_of_editing_that_goes_quiet_becomes_an_automatic_version(
    settings: Settings,
) -> None:
    quick = settings.replace(compact_after_quiet_s=0.3, compact_after_s=3600.0)
    async with run_server(quick) as server:
        client = YClient(server.ws_url("doc"))
        await client.connect()
        try:
            client.text.insert(0, "a fresh document")
            await eventually(client.is_saved, what="saved")

            async def versions() -> list[dict[str, Any]]:
                async with httpx.AsyncClient(base_url=server.http_url) as http:
                    body = (await http.get("/api/documents/doc/snapshots")).json()
                return body["snapshots"]  # type: ignore[no-any-return]

            found = await eventually(versions, what="an automatic version")
            assert [v["kind"] for v in found] == ["auto"]
            assert found[0]["preview"] == "a fresh document"
        finally:
            await client.close()


async def test_reverting_an_author_removes_only_their_text_after_a_pre_revert_version(
    tokened: Settings, clients: list[YClient]
) -> None:
    async with run_server(tokened) as server:
        alice = await _join(server, clients, "alice")
        bob = await _join(server, clients, "bob")
        alice.text.insert(0, "[a1]")
        await eventually(lambda: str(bob.text) == "[a1]", what="bob sees alice")
        bob.text.insert(4, "[b1]")
        await eventually(lambda: str(alice.text) == "[a1][b1]", what="alice sees bob")
        alice.text.insert(8, "[a2]")
        await eventually(lambda: str(bob.text) == "[a1][b1][a2]", what="bob sees alice again")
        await eventually(lambda: alice.is_saved() and bob.is_saved(), what="saved")
        result = await _post(server, "/api/documents/doc/revert", {"author": "alice"}, "root")
        assert result["sessions"] == 1 and result["changed"] is True
        await eventually(lambda: str(alice.text) == "[b1]", what="alice's text gone live")
        await _blame_is(server, [("[b1]", "bob")])
        pre_revert = result["pre_revert_snapshot_id"]
        before = await _get(server, f"/api/documents/doc/snapshots/{pre_revert}")
        assert before["content"]["text"] == "[a1][b1][a2]"
        assert before["snapshot"]["kind"] == "pre-restore"
        events = (await _get(server, "/api/documents/doc/activity"))["events"]
        assert any(e.get("origin") == "revert" and e["author"] == "root" for e in events)


async def test_undoing_one_session_keeps_the_same_authors_other_sessions(
    tokened: Settings, clients: list[YClient]
) -> None:
    async with run_server(tokened) as server:
        alice = await _join(server, clients, "alice")
        alice.text.insert(0, "first ")
        await eventually(alice.is_saved, what="saved")
        await alice.close()
        # A new connection is a new Doc: a new client id, a new session.
        again = await _join(server, clients, "alice")
        again.text.insert(len(again.text), "second")
        await eventually(again.is_saved, what="saved")
        room = server.runtime.registry.rooms["doc"]
        room.authorship._sessions.clear()  # as if alice had been quiet past the gap
        sessions = [
            e
            for e in (await _get(server, "/api/documents/doc/activity"))["events"]
            if e["kind"] == "session"
        ]
        assert len(sessions) == 1  # one author, one burst so far
        newest = sessions[0]["id"]
        again.text.insert(len(again.text), " third")
        await eventually(again.is_saved, what="saved")
        await _post(server, "/api/documents/doc/revert", {"session": newest}, "alice")
        await eventually(lambda: str(again.text) == " third", what="the session undone")


async def test_diffs_name_who_wrote_each_hunk_between_versions_and_times(
    tokened: Settings, clients: list[YClient]
) -> None:
    async with run_server(tokened) as server:
        alice = await _join(server, clients, "alice")
        alice.text.insert(0, "hello there")
        await eventually(alice.is_saved, what="saved")
        version = await _post(server, "/api/documents/doc/snapshots", {"label": "v1"}, "alice")
        bob = await _join(server, clients, "bob")
        del bob.text[5:11]  # " there", alice's
        bob.text.insert(5, " world")
        await eventually(bob.is_saved, what="saved")
        by_id = await _get(server, f"/api/documents/doc/snapshots/{version['id']}/diff")
        hunks = [(h["op"], h["text"], h["authors"]) for h in by_id["text_roots"][0]["hunks"]]
        # A character diff: "r" is common to " there" and " world", but bob wrote
        # the new one, so an equal hunk can name him too.
        assert {op for op, _, _ in hunks} == {"equal", "insert", "delete"}
        assert all(authors == ["bob"] for op, _, authors in hunks if op == "insert")
        assert all(authors == ["alice"] for op, _, authors in hunks if op == "delete")
        by_time = await _get(server, "/api/documents/doc/diff", **{"from": version["updated_at"]})
        assert by_time == by_id
        by_version = await _get(server, "/api/documents/doc/diff", **{"from": str(version["id"])})
        assert by_version == by_id


async def test_reverting_an_author_brings_back_the_paragraph_they_deleted_keeping_later_edits(
    tokened: Settings, clients: list[YClient]
) -> None:
    async with run_server(tokened) as server:
        alice = await _join(server, clients, "alice")
        alice.text.insert(0, "First paragraph.\nSecond paragraph.\n")
        await eventually(alice.is_saved, what="alice saved")
        version = await _post(server, "/api/documents/doc/snapshots", {"label": "v"}, "alice")
        bob = await _join(server, clients, "bob")
        await eventually(lambda: str(bob.text).startswith("First"), what="bob sees alice")
        del bob.text[0:17]  # alice's first paragraph
        bob.text.insert(0, "Bob was here. ")
        await eventually(lambda: str(alice.text).startswith("Bob"), what="alice sees bob")
        carol = await _join(server, clients, "carol")
        await eventually(lambda: str(carol.text).startswith("Bob"), what="carol sees bob")
        carol.text.insert(len(carol.text), "Carol's later line.")
        expected = "First paragraph.\nSecond paragraph.\nCarol's later line."
        await eventually(lambda: all(c.is_saved() for c in clients), what="saved")
        result = await _post(server, "/api/documents/doc/revert", {"author": "bob"}, "root")
        assert result["deletions_restored"] is True
        assert result["deletions_not_restored_reason"] is None
        assert result["restored_characters"] == 17
        assert result["restored_from_version"] == version["id"]
        for client in clients:
            await eventually(lambda c=client: str(c.text) == expected, what="converged")
        # The paragraph is new items made by the revert, but the same text of the
        # version it was read from: it keeps its author.
        await _blame_is(
            server,
            [("First paragraph.\nSecond paragraph.\n", "alice"), ("Carol's later line.", "carol")],
        )
        events = (await _get(server, "/api/documents/doc/activity"))["events"]
        reverts = [e for e in events if e.get("origin") == "revert"]
        assert reverts and reverts[0]["author"] == "root" and reverts[0]["inserted"] == 17


async def test_a_revert_without_a_version_from_before_says_the_deletions_did_not_come_back(
    tokened: Settings, clients: list[YClient]
) -> None:
    async with run_server(tokened) as server:
        alice = await _join(server, clients, "alice")
        alice.text.insert(0, "gone for good")
        await eventually(alice.is_saved, what="alice saved")
        bob = await _join(server, clients, "bob")
        await eventually(lambda: str(bob.text) == "gone for good", what="bob sees alice")
        del bob.text[0:5]
        bob.text.insert(0, "B")
        await eventually(bob.is_saved, what="bob saved")
        result = await _post(server, "/api/documents/doc/revert", {"author": "bob"}, "root")
        assert result["deletions_restored"] is False
        assert "no version" in result["deletions_not_restored_reason"]
        assert result["restored_characters"] == 0 and result["changed"] is True
        await eventually(lambda: str(alice.text) == "for good", what="bob's insertion gone")


async def test_sessions_count_characters_inserted_and_deleted_per_text_root(
    tokened: Settings, clients: list[YClient]
) -> None:
    async with run_server(tokened) as server:
        alice = await _join(server, clients, "alice")
        title = alice.doc.get("title", type=Text)
        title.insert(0, "My title")
        alice.text.insert(0, "Body text here")
        del alice.text[0:5]  # "Body "
        alice.doc.get("meta", type=Map)["tags"] = ["not", "text"]
        await eventually(alice.is_saved, what="saved")
        # Content loaded from storage: the server reads its roots from the Doc.
        await _post(server, "/api/documents/doc/snapshots", {"label": "v"}, "alice")
        await alice.close()
    async with run_server(tokened) as server:
        bob = await _join(server, clients, "bob")
        await eventually(lambda: str(bob.text) == "text here", what="bob loaded")
        del bob.doc.get("title", type=Text)[0:3]  # "My "
        bob.text.insert(len(bob.text), "!!")
        await eventually(bob.is_saved, what="saved")

        async def sessions() -> dict[str, dict[str, Any]]:
            events = (await _get(server, "/api/documents/doc/activity"))["events"]
            found = {e["author"]: e for e in events if e["kind"] == "session"}
            return found if "bob" in found else {}

        found = await eventually(sessions, what="both sessions")
        assert found["alice"]["roots"] == {
            "title": {"inserted": 8, "deleted": 0},
            "text": {"inserted": 14, "deleted": 5},
        }
        assert found["bob"]["roots"] == {
            "title": {"inserted": 0, "deleted": 3},
            "text": {"inserted": 2, "deleted": 0},
        }
        # The totals stay, in clock units over every root.
        assert found["bob"]["inserted"] == 2 and found["bob"]["deleted"] == 3


async def test_on_postgresql_a_revert_brings_back_deletions_and_sessions_count_per_root(
    tokened: Settings, postgres_url: str, clients: list[YClient]
) -> None:
    async with run_server(tokened.replace(database_url=postgres_url)) as server:
        alice = await _join(server, clients, "alice")
        alice.text.insert(0, "keep this sentence")
        await eventually(alice.is_saved, what="alice saved")
        await _post(server, "/api/documents/doc/snapshots", {"label": "v"}, "alice")
        bob = await _join(server, clients, "bob")
        await eventually(lambda: str(bob.text) == "keep this sentence", what="bob sees alice")
        del bob.text[4:9]  # " this"
        await eventually(bob.is_saved, what="bob saved")
        events = (await _get(server, "/api/documents/doc/activity", author="bob"))["events"]
        assert events[0]["roots"] == {"text": {"inserted": 0, "deleted": 5}}
        result = await _post(server, "/api/documents/doc/revert", {"author": "bob"}, "root")
        assert result["deletions_restored"] is True and result["restored_characters"] == 5
        await eventually(lambda: str(alice.text) == "keep this sentence", what="restored")
        await _blame_is(server, [("keep this sentence", "alice")])
        # The revert's version compacted the log on PostgreSQL too: the sessions
        # count each edit once.
        sessions = [
            (e["author"], e["origin"], e["inserted"], e["deleted"])
            for e in (await _get(server, "/api/documents/doc/activity"))["events"]
            if e["kind"] == "session"
        ]
        assert sorted(sessions) == [
            ("alice", "edit", 18, 0),
            ("bob", "edit", 0, 5),
            ("root", "revert", 5, 0),
        ]


async def test_kill_9_keeps_every_session_a_commit_had_and_compaction_keeps_them_exact(
    tmp_path: Path,
) -> None:
    """A session is written in the transaction of each log row that grows it: a
    crash right after the commits loses none of it, and a compaction of those
    rows after the restart counts each edit once."""
    async with server_process(tmp_path, env={"COLLAB_AUTH_SECRET": SECRET}) as server:
        alice = await YClient(f"{server.ws_url('doc')}?token={token('alice')}").connect()
        bob = await YClient(f"{server.ws_url('doc')}?token={token('bob')}").connect()
        for i in range(60):
            alice.text.insert(len(alice.text), "ab")
            if i % 3 == 0:
                bob.text.insert(0, "xyz")
            await eventually(lambda: str(bob.text) == str(alice.text), what="converged")
        del bob.text[0:4]  # "xyzx": four of his own characters
        await eventually(lambda: str(bob.text) == str(alice.text), what="converged")
        await eventually(lambda: alice.is_saved() and bob.is_saved(), what="saved")
        server.process.kill()  # type: ignore[union-attr]
        await server.process.wait()  # type: ignore[union-attr]
        await alice.wait_closed()
        await bob.wait_closed()
        await server.start()

        async def sessions() -> dict[str, tuple[int, int]]:
            events = (await _get(server, "/api/documents/doc/activity"))["events"]
            found = [e for e in events if e["kind"] == "session"]
            return {e["author"]: (e["inserted"], e["deleted"]) for e in found}

        after_crash = await sessions()
        assert after_crash == {"alice": (120, 0), "bob": (60, 4)}
        # A named version compacts the log: the sessions stay as they were.
        await _post(server, "/api/documents/doc/snapshots", {"label": "v1"}, "alice")
        assert await sessions() == after_crash
        assert await server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        await server.start()
        assert await sessions() == after_crash
        assert await read_text(server.ws_url("doc") + f"?token={token('carol')}") == str(alice.text)
