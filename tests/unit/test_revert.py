"""A revert computed from bytes: the author's insertions go, the text they
deleted comes back where it was (found by identity), others' edits stay."""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Text

from collab.history.revert import revert_update
from collab.protocol.update_ids import update_ids
from collab.storage.attribution import ClockRange, subtract_ranges


def _doc(state: bytes) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    return doc


class _Author:
    """One person's edits on their own replica, and the ids they made and deleted."""

    def __init__(self, state: bytes) -> None:
        self.doc = _doc(state)
        self.text = self.doc.get("text", type=Text)
        self.inserted: list[ClockRange] = []
        self.deleted: list[ClockRange] = []
        self.doc.observe(self._note)

    def _note(self, event: Any) -> None:
        ids = update_ids(event.update)
        self.inserted += [(c, s, e) for c, (s, e) in ids.created.items()]
        self.deleted += ids.deleted_ranges


def _apply(state: bytes, *updates: bytes) -> str:
    doc = _doc(state)
    for update in updates:
        doc.apply_update(update)
    return str(doc.get("text", type=Text))


def test_deleted_text_comes_back_before_later_edits_with_its_formatting() -> None:
    alice: Doc[Any] = Doc()
    text = alice.get("text", type=Text)
    text.insert(0, "one two three")
    text.format(4, 7, {"bold": True})
    version = alice.get_update()
    bob = _Author(version)
    del bob.text[0:8]  # "one two "
    bob.text.insert(0, "B:")
    carol = _doc(bob.doc.get_update())
    carol_text = carol.get("text", type=Text)
    carol_text.insert(len(carol_text), " (carol)")
    current = carol.get_update()
    plan = revert_update(current, bob.inserted, bob.deleted, version)
    assert plan.restored_chars == 8 and plan.missing is None
    assert plan.update is not None
    reverted = _doc(current)
    reverted.apply_update(plan.update)
    restored = reverted.get("text", type=Text)
    assert str(restored) == "one two three (carol)"
    assert ("two", {"bold": True}) in restored.diff()


def test_the_authors_own_deleted_typing_does_not_come_back() -> None:
    alice: Doc[Any] = Doc()
    alice.get("text", type=Text).insert(0, "base")
    version = alice.get_update()
    bob = _Author(version)
    bob.text.insert(4, " typo")
    del bob.text[4:9]
    bob.text.insert(4, "!")
    plan = revert_update(bob.doc.get_update(), bob.inserted, bob.deleted, version)
    assert plan.restored_chars == 0 and plan.missing is None
    assert plan.update is not None
    assert _apply(bob.doc.get_update(), plan.update) == "base"


def test_text_written_after_the_version_cannot_come_back_and_says_so() -> None:
    alice: Doc[Any] = Doc()
    alice.get("text", type=Text).insert(0, "old ")
    version = alice.get_update()
    alice.get("text", type=Text).insert(4, "new")  # after the version
    bob = _Author(alice.get_update())
    del bob.text[0:7]
    plan = revert_update(bob.doc.get_update(), bob.inserted, bob.deleted, version)
    assert plan.restored_chars == 4
    assert plan.missing is not None and "written after" in plan.missing
    assert plan.update is not None
    assert _apply(bob.doc.get_update(), plan.update) == "old "


def test_without_a_version_from_before_only_the_insertions_go() -> None:
    alice: Doc[Any] = Doc()
    alice.get("text", type=Text).insert(0, "kept")
    bob = _Author(alice.get_update())
    del bob.text[0:2]
    bob.text.insert(0, "x")
    plan = revert_update(bob.doc.get_update(), bob.inserted, bob.deleted, None)
    assert plan.missing is not None and plan.restored_chars == 0
    assert plan.update is not None
    assert _apply(bob.doc.get_update(), plan.update) == "pt"


def test_subtracting_ranges_leaves_what_the_other_does_not_cover() -> None:
    assert subtract_ranges([(1, 0, 10), (2, 0, 5)], [(1, 3, 5), (1, 8, 20)]) == [
        (1, 0, 3),
        (1, 5, 8),
        (2, 0, 5),
    ]


def test_a_text_holding_an_embed_is_left_as_it_is_and_the_plan_says_so() -> None:
    alice: Doc[Any] = Doc()
    text = alice.get("text", type=Text)
    text.insert(0, "ab")
    text.insert_embed(1, {"image": "x.png"})
    version = alice.get_update()
    bob = _Author(version)
    del bob.text[0:1]
    plan = revert_update(bob.doc.get_update(), bob.inserted, bob.deleted, version)
    assert plan.restored_chars == 0
    assert plan.missing is not None and "embeds" in plan.missing and "text" in plan.missing
