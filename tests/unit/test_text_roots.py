"""Per text root counts of editing sessions agree with what the text roots'
own change events say, for changes made in the room and content loaded from
storage (whose roots the index reads from the Doc)."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from pycrdt import Doc, Map, Text, TextEvent

from collab.rooms.authorship import Authorship
from collab.storage.attribution import Author

ALICE = Author("alice", is_verified=True)
ROOTS = ("title", "content")


class _Truth:
    """Characters inserted and deleted per root, from the roots' own events
    (ASCII only: one character, one clock unit, one yrs offset)."""

    def __init__(self, doc: Doc[Any]) -> None:
        self.counts: dict[str, list[int]] = {}
        self._subscriptions = [doc.get(name, type=Text).observe(self._on(name)) for name in ROOTS]

    def _on(self, name: str) -> Callable[[TextEvent], None]:
        def count(event: TextEvent) -> None:
            counts = self.counts.setdefault(name, [0, 0])
            for op in getattr(event, "delta", []):
                if "insert" in op:
                    counts[0] += len(op["insert"])
                elif "delete" in op:
                    counts[1] += int(op["delete"])

        return count


def _edit(doc: Doc[Any], rng: random.Random) -> None:
    text = doc.get(rng.choice(ROOTS), type=Text)
    with doc.transaction():
        if rng.random() < 0.6 or len(text) < 2:
            text.insert(rng.randint(0, len(text)), rng.choice(["a", "xy", "hello "]))
        else:
            start = rng.randint(0, len(text) - 1)
            del text[start : min(len(text), start + rng.randint(1, 4))]
        if rng.random() < 0.2:
            doc.get("meta", type=Map)[str(rng.randint(0, 3))] = "not text"


def _room_doc(state: bytes | None) -> tuple[Doc[Any], Authorship]:
    doc: Doc[Any] = Doc()
    if state is not None:
        doc.apply_update(state)
    authorship = Authorship("doc", doc.get_state(), full_state=doc.get_update)
    doc.observe(lambda event: authorship.note_local(event.update, ALICE))
    return doc, authorship


def _counted(authorship: Authorship) -> dict[str, list[int]]:
    _, sessions = authorship.take_pending()
    assert len(sessions) == 1
    return {root: [inserted, deleted] for root, inserted, deleted in sessions[0].roots}


def test_counts_per_text_root_match_the_roots_events_over_two_roots() -> None:
    rng = random.Random(3)
    doc, authorship = _room_doc(None)
    truth = _Truth(doc)
    for _ in range(300):
        _edit(doc, rng)
    assert _counted(authorship) == truth.counts
    assert set(truth.counts) == set(ROOTS)  # "meta" is a map: not counted


def test_counts_over_content_loaded_from_storage_read_its_roots_from_the_doc() -> None:
    rng = random.Random(5)
    writer: Doc[Any] = Doc()
    for _ in range(200):
        _edit(writer, rng)
    doc, authorship = _room_doc(writer.get_update())
    truth = _Truth(doc)
    for _ in range(200):
        _edit(doc, rng)
    assert _counted(authorship) == truth.counts
