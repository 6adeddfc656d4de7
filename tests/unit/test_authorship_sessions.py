"""A room's editing session records what its author created as clock ranges
that stay few however many edits it holds; stored as each tick's delta, it folds
back into the same session."""

from __future__ import annotations

import random

from pycrdt import Doc, Text

from collab.rooms.authorship import Authorship
from collab.storage.attribution import (
    Author,
    EditSession,
    GrowingSession,
    decode_rows,
    encode_deltas,
    fold,
)

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


def test_a_session_folded_from_each_ticks_delta_is_the_session_of_one_tick() -> None:
    """What storage folds from the log rows' deltas (collab.storage.attribution.fold)
    is what one take of the whole burst makes; and a fold that starts from a row
    holding some of them (its through_id) counts none twice."""
    rng = random.Random(7)
    server: Doc = Doc()
    per_tick = Authorship("doc", server.get_state(), wall_clock=lambda: 1000.0)
    at_once = Authorship("doc", server.get_state(), wall_clock=lambda: 1000.0)
    server.observe(lambda event: per_tick.note_local(event.update, ANONYMOUS))
    server.observe(lambda event: at_once.note_local(event.update, ANONYMOUS))
    clients = [Doc() for _ in range(3)]
    rows: list[tuple[int, str]] = []  # (log row id, its `sessions`)
    for turn in range(300):
        client = clients[turn % len(clients)]
        client.apply_update(server.get_update(client.get_state()))
        text = client.get("text", type=Text)
        if len(text) > 5 and rng.random() < 0.3:
            start = rng.randint(0, len(text) - 3)
            del text[start : start + rng.randint(1, 3)]
        else:
            text.insert(rng.randint(0, len(text)), "xy"[: rng.randint(1, 2)])
        server.apply_update(client.get_update(server.get_state()))
        _, grown = per_tick.take_pending()
        rows.append((turn + 1, encode_deltas(grown)))

    _, (whole,) = at_once.take_pending()
    deltas, unreadable = decode_rows(rows)
    grown_once, bad = fold({}, deltas)
    ((folded, through),) = grown_once.values()

    assert unreadable == [] and bad == [] and through == 300
    assert _same(folded.stored(), GrowingSession.of(whole).stored())
    key = folded.key
    halfway = fold({}, deltas[:150])[0][key][0].stored()
    resumed = fold({key: (halfway, 150)}, deltas)[0][key][0].stored()
    assert _same(resumed, folded.stored())
    assert fold({key: (folded.stored(), 300)}, deltas) == ({}, [])


def test_log_rows_whose_deltas_do_not_decode_are_named_and_the_others_folded() -> None:
    author = Author("alice")
    delta = EditSession(7, author, 1.0, 2.0, 3, 0, ((5, 0, 3),), roots=(("text", 3, 0),))
    rows = [
        (1, encode_deltas([delta])),
        (2, "{not json"),
        (3, '[["x"]]'),
        (4, encode_deltas([delta])),
    ]

    parsed, unreadable = decode_rows(rows)
    grown, bad = fold({}, parsed)

    assert unreadable == [2] and bad == [3]
    session, through = grown[7]
    assert through == 4 and session.stored().inserted == 6 and session.roots == {"text": (6, 0)}


def _same(a: EditSession, b: EditSession) -> bool:
    """The same session (whatever its key): counts, and the same clocks in its ranges."""

    def clocks(ranges: tuple[tuple[int, int, int], ...]) -> set[tuple[int, int]]:
        return {(c, clock) for c, s, e in ranges for clock in range(s, e)}

    return (
        (a.author, a.inserted, a.deleted, a.started_at, a.ended_at)
        == (b.author, b.inserted, b.deleted, b.started_at, b.ended_at)
        and clocks(a.ranges) == clocks(b.ranges)
        and clocks(a.deleted_ranges) == clocks(b.deleted_ranges)
        and a.roots == b.roots
    )
