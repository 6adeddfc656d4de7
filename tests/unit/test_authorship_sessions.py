"""A room's editing session records what its author created as clock ranges
that stay few however many edits it holds (the row is rewritten per commit)."""

from __future__ import annotations

import random

from pycrdt import Doc, Text

from collab.rooms.authorship import Authorship
from collab.storage.attribution import Author

ANONYMOUS = Author("anonymous")


def test_clients_of_one_author_editing_in_turn_keep_one_range_each() -> None:
    rng = random.Random(3)
    server: Doc = Doc()
    authorship = Authorship("doc", server.get_state(), wall_clock=lambda: 1000.0)
    server.observe(lambda event: authorship.note_local(event.update, ANONYMOUS))
    clients = [Doc() for _ in range(5)]
    for turn in range(200):
        client = clients[turn % len(clients)]
        client.apply_update(server.get_update(client.get_state()))
        text = client.get("text", type=Text)
        text.insert(rng.randint(0, len(text)), "x")
        server.apply_update(client.get_update(server.get_state()))

    _, sessions = authorship.take_pending()

    (session,) = sessions
    assert session.inserted == 200
    assert sorted(session.ranges) == sorted((doc.client_id, 0, 40) for doc in clients)


def test_a_clock_gap_starts_a_new_range_for_that_client() -> None:
    authorship = Authorship("doc", b"\x00", wall_clock=lambda: 1000.0)
    first: Doc = Doc()
    text = first.get("text", type=Text)
    updates: list[bytes] = []
    first.observe(lambda event: updates.append(event.update))
    for _ in range(3):
        text += "ab"
    authorship.note_local(updates[0], ANONYMOUS)
    authorship.note_local(updates[2], ANONYMOUS)  # the middle one went elsewhere

    _, (session,) = authorship.take_pending()

    assert session.ranges == ((first.client_id, 0, 2), (first.client_id, 4, 6))
