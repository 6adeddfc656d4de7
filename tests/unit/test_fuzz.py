"""Property-based fuzzing (hypothesis) of the codec and of the room's handlers.

Promises checked:
- `decode_message` returns a typed message or raises a `ProtocolError`; nothing else.
- `Room.handle` on any decoded frame either works or raises a `Refusal` (which the
  transport turns into a close code); nothing else escapes.
- Whatever the room's Doc ends up holding was submitted for storage: replaying
  the submitted updates gives the same document (nothing applied unstored).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Awareness, Doc, Map, Text, write_message, write_var_uint

from collab.errors import ProtocolError, Refusal
from collab.metrics import Metrics
from collab.protocol.codec import Message, decode_message, decode_state_vector
from collab.rooms.peer import Peer, PeerLimits
from collab.rooms.room import Room
from collab.rooms.room_limits import RoomLimits
from collab.rooms.yrs_panics import yrs_panics_as
from collab.storage.store import AppendUpdate
from tests.support.fakes import RecordingSink, RecordingTransport

# derandomize: CI runs the same examples every time (a failure is reproducible,
# never a one-off); run with --hypothesis-seed=random locally to explore more.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


def _updates() -> list[bytes]:
    """Real Yjs updates of several shapes, to mutate and splice."""
    doc: Doc = Doc()
    found: list[bytes] = []
    doc.observe(lambda event: found.append(event.update))
    text = doc.get("text", type=Text)
    text.insert(0, "hello world")
    text.insert(5, ",")
    del text[0:2]
    doc.get("map", type=Map)["key"] = {"nested": [1, 2, 3]}
    return [*found, doc.get_update()]


UPDATES = _updates()
_AWARENESS_DOC: Doc = Doc()
_awareness = Awareness(_AWARENESS_DOC)
_awareness.set_local_state({"user": {"name": "fuzz"}})
AWARENESS = _awareness.encode_awareness_update([_AWARENESS_DOC.client_id])


@st.composite
def mutated(draw: st.DrawFn, base: st.SearchStrategy[bytes]) -> bytes:
    data = bytearray(draw(base))
    for _ in range(draw(st.integers(0, 4))):
        if not data:
            break
        op = draw(st.sampled_from(["flip", "cut", "insert"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del data[at:]
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


payloads = st.one_of(
    st.binary(max_size=64),
    mutated(st.sampled_from(UPDATES)),
    st.sampled_from(UPDATES),
    mutated(st.just(AWARENESS)),
)

frames = st.one_of(
    st.binary(max_size=256),
    # well-formed envelopes around valid, damaged or random payloads
    st.builds(
        lambda sync_type, payload: b"\x00" + write_var_uint(sync_type) + write_message(payload),
        st.integers(0, 3),
        payloads,
    ),
    st.builds(lambda payload: b"\x01" + write_message(payload), payloads),
    st.builds(lambda kind, tail: write_var_uint(kind) + tail, st.integers(2, 300), st.binary()),
    # envelopes whose length prefix lies
    st.builds(
        lambda length, payload: b"\x00\x02" + write_var_uint(length) + payload,
        st.integers(0, 2**53),
        st.binary(max_size=32),
    ),
)


@FUZZ
@given(frame=frames)
def test_decoder_returns_a_message_or_raises_a_protocol_error(frame: bytes) -> None:
    try:
        message = decode_message(frame)
    except ProtocolError as exc:
        assert exc.reason
        return
    assert isinstance(message, Message)


def _clocks(doc: Doc) -> dict[int, int]:
    return {c: clock for c, clock in decode_state_vector(doc.get_state()).items() if clock}


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@FUZZ
@given(sequence=st.lists(frames, min_size=1, max_size=12))
def test_room_handlers_refuse_cleanly_and_store_all_they_apply(
    loop: asyncio.AbstractEventLoop, sequence: list[bytes]
) -> None:
    sink = RecordingSink(loop)
    room = Room("fuzz", Doc(), sink, limits=RoomLimits(max_document_bytes=4096))
    peer = Peer(RecordingTransport(), "fuzz", PeerLimits(), Metrics())
    room.add_peer(peer)
    for frame in sequence:
        try:
            room.handle(peer, decode_message(frame))
        except Refusal as exc:
            assert exc.close_code >= 4000
    replay: Doc = Doc()
    for op in sink.ops:
        assert isinstance(op, AppendUpdate)
        replay.apply_update(op.update)
    # Same content: the room holds nothing the replay lacks. (Compared by what a
    # diff would add, since yrs may keep a clock-0 entry in a state vector.)
    changes: list[bytes] = []
    replay.observe(lambda event: changes.append(event.update))
    try:
        with yrs_panics_as(RuntimeError):
            missing = room.doc.get_update(replay.get_state())
    except RuntimeError:
        # A yrs defect (0.28: divide by zero in block_store) leaves some fuzzed
        # Docs unencodable; the server's encode paths turn it into a refusal or a
        # failed compaction (room.yrs_panics_as). Nothing more to compare here.
        room.close(1000, "done")  # type: ignore[arg-type]
        return
    replay.apply_update(missing)
    assert all(change == b"\x00\x00" for change in changes), "applied but never stored"
    assert _clocks(replay) == _clocks(room.doc)
    room.close(1000, "done")  # type: ignore[arg-type]
