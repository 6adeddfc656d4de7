"""Blame reads whose each character is from clock ranges, through edits that
split, move around and delete other people's text."""

from __future__ import annotations

from pycrdt import Doc, Text

from collab.history.blame import blame
from collab.storage.attribution import Author, EditSession

ALICE, BOB = Author("alice", "Alice", True), Author("bob", None, True)


def _session(key: int, author: Author, at: float, client: int) -> EditSession:
    return EditSession(key, author, at, at, 0, 0, ((client, 0, 1000),))


def test_runs_follow_interleaved_inserts_and_deletions_of_two_authors() -> None:
    a, b = Doc(client_id=1), Doc(client_id=2)
    text_a, text_b = a.get("t", type=Text), b.get("t", type=Text)
    text_a.insert(0, "hé😀llo ")
    b.apply_update(a.get_update())
    text_b.insert(3, "XYZ")
    text_b.insert(len(text_b), "world")
    a.apply_update(b.get_update())
    text_a.insert(0, "A")
    del text_a[2]
    b.apply_update(a.get_update())
    runs = blame(b.get_update(), [_session(1, ALICE, 10.0, 1), _session(2, BOB, 20.0, 2)], {})
    assert "".join(r.text for r in runs["t"]) == str(text_b)
    assert [(r.text, r.author and r.author.subject, r.at) for r in runs["t"]] == [
        ("Ah", "alice", 10.0),
        ("XYZ", "bob", 20.0),
        ("😀llo ", "alice", 10.0),
        ("world", "bob", 20.0),
    ]


def test_content_without_a_session_falls_back_to_its_client_ids_owner_or_nobody() -> None:
    a, b = Doc(client_id=1), Doc(client_id=2)
    a.get("t", type=Text).insert(0, "old ")
    b.apply_update(a.get_update())
    b.get("t", type=Text).insert(4, "new")
    runs = blame(b.get_update(), [], {2: "bob"})["t"]
    assert [(r.text, r.author and r.author.subject, r.at) for r in runs] == [
        ("old ", None, None),
        ("new", "bob", None),
    ]
