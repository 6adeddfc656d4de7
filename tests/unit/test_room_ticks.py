"""What arrives in one event-loop tick is stored as one log row and relayed as one
message; whoever needs it sooner gets it submitted at once."""

from __future__ import annotations

import asyncio

from pycrdt import Doc, Text

from collab.protocol.codec import SyncStep1, SyncStep2, SyncUpdate
from collab.storage.store import AppendUpdate
from tests.support.fakes import make_room, next_tick, queued
from tests.support.yclient import text_edits


def _text_of(updates: list[bytes]) -> str:
    doc: Doc = Doc()
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("text", type=Text))


async def test_a_burst_in_one_tick_is_one_row_and_one_relayed_message():
    room, sink, feed, peer = make_room()
    pieces = [f"<{i}>" for i in range(100)]
    for update in text_edits(*pieces):
        assert room.handle(peer, SyncUpdate(update)) is True
    assert sink.ops == [], "nothing is submitted before the tick ends"
    await next_tick()
    rows = [op.update for op in sink.ops if isinstance(op, AppendUpdate)]
    assert len(rows) == 2, "merged in bounded runs (64 + 36)"
    assert _text_of(rows) == "".join(pieces)
    relayed = [m.update for m in queued(peer) if isinstance(m, SyncUpdate)]
    assert len(relayed) == 2 and _text_of(relayed) == "".join(pieces)
    assert [u for u, _ in feed.updates] == rows, "published as stored"


async def test_separate_ticks_are_separate_rows():
    room, sink, _, _ = make_room()
    for update in text_edits("a", "b", "c"):
        room.apply_update(update)
        await asyncio.sleep(0)
    assert [type(op) for op in sink.ops] == [AppendUpdate] * 3


async def test_a_step_1_in_the_same_tick_waits_for_the_edits_before_it():
    """The step 2 holds this tick's edits, so they go to the writer first and the
    reply waits for them (a barrier), as for any write still in flight."""
    room, sink, _, peer = make_room()
    [edit] = text_edits("typed")
    room.handle(peer, SyncUpdate(edit))
    room.handle(peer, SyncStep1(b"\x00"))
    assert [type(op) for op in sink.ops] == [AppendUpdate], "submitted before the reply"
    await next_tick()
    replies = [m for m in queued(peer) if isinstance(m, SyncStep2)]
    assert replies and _text_of([replies[-1].update]) == "typed"


async def test_closing_a_room_stores_what_it_has_not_submitted():
    room, sink, _, _ = make_room()
    for update in text_edits("last", " words"):
        room.apply_update(update)
    room.close(1000, "unloaded")  # type: ignore[arg-type]
    rows = [op.update for op in sink.ops if isinstance(op, AppendUpdate)]
    assert _text_of(rows) == "last words"
    assert not room.has_pending_edits
