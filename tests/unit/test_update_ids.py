"""The clock ranges an update creates and what it deletes, read from its bytes,
agree with what applying it to a Doc does."""

from __future__ import annotations

import random

import pytest
from pycrdt import Array, Doc, Map, Text

from collab.protocol.codec import decode_id_ranges, decode_state_vector, encode_id_ranges
from collab.protocol.update_ids import update_ids


def _edit(doc: Doc, rng: random.Random) -> None:
    text = doc.get("text", type=Text)
    entries = doc.get("map", type=Map)
    items = doc.get("array", type=Array)
    roll = rng.random()
    with doc.transaction():
        if roll < 0.5 or not len(text):
            text.insert(rng.randint(0, len(text)), rng.choice(["a", "xy", "hello"]))
        elif roll < 0.7:
            start = rng.randint(0, len(text) - 1)
            del text[start : min(len(text), start + rng.randint(1, 3))]
        elif roll < 0.8:
            entries[str(rng.randint(0, 5))] = rng.choice(
                [1, "s😀", None, True, 1.5, {"a": [1, 2]}, 2**40, -7]
            )
        elif roll < 0.9:
            items.append(rng.choice([1, "x", [1, 2], {"k": "v"}]))
        else:
            text.format(0, min(2, len(text)), {"bold": True})


def test_created_ranges_match_what_three_concurrent_docs_add_to_a_fourth() -> None:
    rng = random.Random(7)
    writers = [Doc() for _ in range(3)]
    server: Doc = Doc()
    deltas: list[bytes] = []
    server.observe(lambda event: deltas.append(event.update))
    for _ in range(600):
        doc = rng.choice(writers)
        doc.apply_update(server.get_update(doc.get_state()))
        _edit(doc, rng)
        before = decode_state_vector(server.get_state())
        deltas.clear()
        server.apply_update(doc.get_update(server.get_state()))
        after = decode_state_vector(server.get_state())
        expected = {
            c: (before.get(c, 0), end) for c, end in after.items() if end > before.get(c, 0)
        }
        assert [update_ids(d).created for d in deltas] in ([expected], [])


def test_strings_count_utf16_code_units_like_yjs_clocks() -> None:
    doc: Doc = Doc()
    made: list[bytes] = []
    doc.observe(lambda event: made.append(event.update))
    doc.get("text", type=Text).insert(0, "😀é")
    assert update_ids(made[0]).created == {doc.client_id: (0, 3)}


def test_a_deletion_counts_the_clock_units_it_removes() -> None:
    doc: Doc = Doc()
    text = doc.get("text", type=Text)
    text.insert(0, "hello world")
    made: list[bytes] = []
    doc.observe(lambda event: made.append(event.update))
    del text[0:5]
    ids = update_ids(made[0])
    assert ids.created == {} and ids.deleted == 5


@pytest.mark.parametrize("data", [b"", b"\x01\x01", b"\x01\x01\x05\x00\x04\x01\x04text\x09ab"])
def test_a_truncated_update_raises_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        update_ids(data)


def test_id_ranges_round_trip_sorted_and_joined_per_client() -> None:
    ranges = [(7, 10, 12), (2**50, 0, 3), (7, 0, 4), (7, 4, 6), (7, 11, 20), (9, 5, 5)]
    encoded = encode_id_ranges(ranges)
    assert decode_id_ranges(encoded) == ((7, 0, 6), (7, 10, 20), (2**50, 0, 3))
    assert len(encoded) < 20
