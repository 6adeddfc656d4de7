"""What one connection can do to a room's presence is bounded: how many client ids
it owns, whose states it may remove, what the room keeps for ids with no state,
how often it gets every state, and what the document list reports of names and
colours. Rooms on in-memory fakes (tests/support/fakes.py); frames are built by
hand, as a hostile client would."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pycrdt import Doc, create_awareness_message, write_message, write_var_uint

from collab.errors import InvalidAwareness
from collab.metrics import Metrics
from collab.protocol.codec import (
    AwarenessEntry,
    AwarenessUpdate,
    QueryAwareness,
    decode_awareness_update,
    decode_message,
)
from collab.rooms.peer import Peer, PeerLimits
from collab.rooms.presence import PresentUser
from collab.rooms.room import Room
from tests.support.fakes import RecordingFeed, RecordingSink, RecordingTransport, next_tick, queued
from tests.support.server import metric_value

Entry = tuple[int, int, Any]  # client id, clock, state


def _payload(*entries: Entry) -> bytes:
    """An awareness update, as another process publishes it."""
    return write_var_uint(len(entries)) + b"".join(
        write_var_uint(client_id) + write_var_uint(clock) + write_message(json.dumps(s).encode())
        for client_id, clock, s in entries
    )


def _frame(*entries: Entry) -> bytes:
    return create_awareness_message(_payload(*entries))


def _announce(room: Room, peer: Peer, *entries: Entry) -> None:
    message = decode_message(_frame(*entries))
    assert isinstance(message, AwarenessUpdate)
    room.handle(peer, message)


def _join(room: Room, peer_id: int) -> Peer:
    peer = Peer(RecordingTransport(), room.name, PeerLimits(), Metrics(), peer_id=peer_id)
    room.add_peer(peer)
    return peer


def _relayed(peer: Peer) -> list[AwarenessEntry]:
    """Every awareness entry the room has handed `peer`, in order."""
    return [
        entry
        for message in queued(peer)
        if isinstance(message, AwarenessUpdate)
        for entry in message.entries
    ]


def _room(clock: list[float] | None = None) -> tuple[Room, RecordingFeed]:
    feed = RecordingFeed()
    now = clock or [0.0]
    room = Room("doc", Doc(), RecordingSink(), feed=feed, clock=lambda: now[0], metrics=Metrics())
    return room, feed


def _refusals(room: Room, limit: str) -> float:
    return metric_value(room._metrics, "collab_limit_refusals_total", limit=limit)


def _ada(clock: int = 1) -> dict[str, Any]:
    return {"user": {"name": "Ada", "color": "#c2410c"}, "cursor": clock}


async def test_one_connection_owns_at_most_four_client_ids_and_the_rest_are_ignored():
    room, feed = _room()
    greedy, watcher = _join(room, 1), _join(room, 2)
    _announce(room, greedy, *[(client_id, 1, _ada()) for client_id in range(1, 51)])
    await next_tick()
    assert sorted(room.awareness.states) == [1, 2, 3, 4] == sorted(greedy.client_ids)
    assert set(room.awareness.meta) == {1, 2, 3, 4}, "nothing kept for the ignored ids"
    assert sorted(e.client_id for e in _relayed(watcher)) == [1, 2, 3, 4]
    assert [e.client_id for e in decode_awareness_update(feed.awareness[0])] == [1, 2, 3, 4]
    assert _refusals(room, "awareness_client_ids_per_connection") == 1, "once per message"
    # What it owns still works, and once it gives one up it may announce another.
    _announce(room, greedy, (4, 2, None), (60, 1, _ada()), (1, 2, _ada(2)))
    assert sorted(room.awareness.states) == [1, 2, 3, 60]
    assert room.awareness.states[1]["cursor"] == 2


async def test_a_removal_of_a_client_id_the_connection_does_not_own_is_ignored_and_kept_nowhere():
    room, _ = _room()
    owner, other = _join(room, 1), _join(room, 2)
    _announce(room, owner, (7, 1, _ada()))
    _announce(room, other, (7, 2, None))  # not its id, even at a newer clock
    assert room.awareness.states == {7: _ada()}
    # One big message of removals for ids nobody has: the reference server (and
    # pycrdt's Awareness) kept an entry for each, for the life of the room.
    _announce(room, other, *[(client_id, 1, None) for client_id in range(1000, 7000)])
    assert set(room.awareness.states) == {7}
    assert set(room.awareness.meta) == {7}
    await next_tick()
    assert [e.client_id for e in _relayed(owner)] == [7], "no removal was relayed"
    _announce(room, owner, (7, 2, None))  # its owner removes it
    assert room.awareness.states == {}


async def test_states_per_document_are_bounded_and_those_held_are_still_renewed():
    room, _ = _room()
    peers = [_join(room, peer_id) for peer_id in range(1, 252)]
    for peer in peers:  # 1,004 client ids: 4 each
        base = peer.id * 10
        _announce(room, peer, *[(base + i, 1, _ada()) for i in range(4)])
    assert len(room.awareness.states) == 1_000
    assert _refusals(room, "awareness_states_per_document") == 1
    latecomer = peers[-1]
    assert latecomer.client_ids == set()
    # The states already held keep being renewed.
    first = min(room.awareness.states)
    _announce(room, peers[0], (first, 2, _ada(2)))
    assert room.awareness.states[first]["cursor"] == 2


async def test_an_empty_state_is_never_relayed_and_clearing_a_state_relays_a_removal():
    room, feed = _room()
    client, watcher = _join(room, 1), _join(room, 2)
    _announce(room, client, (5, 1, {}))  # y-websocket's first state, before a name
    await next_tick()
    assert room.awareness.states == {} and room.awareness.meta == {}
    assert _relayed(watcher) == [] and feed.awareness == []

    _announce(room, client, (5, 2, _ada()))
    _announce(room, watcher, (5, 3, {}))  # not its id: ignored like a removal
    assert 5 in room.awareness.states
    await next_tick()
    _announce(room, client, (5, 3, {}))  # its owner clears it
    await next_tick()
    assert room.awareness.states == {}
    assert _relayed(watcher)[-1] == AwarenessEntry(5, 3, None)
    assert decode_awareness_update(feed.awareness[-1]) == (AwarenessEntry(5, 3, None),)


async def test_an_echo_of_a_state_neither_takes_it_over_nor_brings_it_back_once_removed():
    room, _ = _room()
    owner, echoer = _join(room, 1), _join(room, 2)
    _announce(room, owner, (7, 3, _ada()))
    # y-websocket sends back every awareness change it hears, at the same clock.
    _announce(room, echoer, (7, 3, _ada()))
    assert owner.client_ids == {7} and echoer.client_ids == set()
    room.remove_peer(owner)
    await next_tick()
    # An echo that was in flight when the removal went out.
    _announce(room, echoer, (7, 3, _ada()))
    assert room.awareness.states == {}
    # The client itself, back on a new connection, announces a newer clock.
    _announce(room, echoer, (7, 4, _ada()))
    assert echoer.client_ids == {7}


async def test_a_query_awareness_flood_is_answered_once_per_interval_from_one_encoding(
    monkeypatch: pytest.MonkeyPatch,
):
    now = [100.0]
    room, _ = _room(now)
    announcer, asker = _join(room, 1), _join(room, 2)
    _announce(room, announcer, *[(i, 1, _ada()) for i in range(1, 5)])
    await next_tick()
    asker._outbox.clear()
    encodes = 0
    encode = room.awareness.encode

    def counting_encode(client_ids: Any) -> bytes:
        nonlocal encodes
        encodes += 1
        return encode(client_ids)

    monkeypatch.setattr(room.awareness, "encode", counting_encode, raising=False)
    for _ in range(1_000):  # 1,000 bytes in
        room.handle(asker, QueryAwareness())
    [answer] = queued(asker)
    assert isinstance(answer, AwarenessUpdate) and len(answer.entries) == 4
    now[0] += 1.0
    room.handle(asker, QueryAwareness())
    room.handle(announcer, QueryAwareness())
    _join(room, 3)  # a joiner gets every state too
    assert len(queued(asker)) == 2, "answered again after the interval"
    assert encodes == 1, "every answer is the same bytes until a state changes"


async def test_presence_from_another_process_cannot_remove_a_local_clients_state():
    room, _ = _room()
    local = _join(room, 1)
    _announce(room, local, (7, 1, _ada()))
    room.presence.apply_from_process("process-b", _payload((7, 5, None)))
    room.presence.apply_from_process("process-b", _payload((8, 1, {}), (9, 1, None)))
    assert set(room.awareness.states) == {7} and set(room.awareness.meta) == {7}
    # The process that owns an id removes it.
    room.presence.apply_from_process("process-b", _payload((8, 1, _ada())))
    room.presence.apply_from_process("process-b", _payload((8, 1, None)))
    assert set(room.awareness.states) == {7}


def test_a_state_holding_nan_is_refused_because_no_javascript_client_could_read_it():
    with pytest.raises(InvalidAwareness):
        decode_awareness_update(
            b"\x01\x05\x01" + write_message(b'{"user": {"name": "x", "cursor": NaN}}')
        )


async def test_the_document_list_reports_a_valid_colour_and_a_clean_bounded_name():
    room, _ = _room()
    client = _join(room, 1)
    hostile = "Eve\u202e\x00\n\t  Lovelace" + "e" * 500
    _announce(
        room,
        client,
        (1, 1, {"user": {"name": hostile, "color": "red;background:url(//x)"}}),
        (2, 1, {"user": {"name": "Bob", "color": "#1D4ed8"}}),
        (3, 1, {"user": {"name": "\u200b\x07 ", "color": "#123456"}}),
        (4, 1, {"user": {"name": "Cy", "color": "#12345"}}),
    )
    eve = ("Eve Lovelace" + "e" * 500)[:100]  # names are cut to 100 characters
    assert room.presence.present_users() == [
        PresentUser("Bob", "#1D4ed8"),
        PresentUser("Cy", ""),
        PresentUser(eve, ""),
    ]
    assert room.awareness.states[1]["user"]["name"] == hostile, "relayed untouched"
