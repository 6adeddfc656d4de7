"""The character diff behind restores: correct, close to minimal, bounded."""

from __future__ import annotations

import random
from itertools import pairwise

import pytest

from collab.history.textdiff import Hunk, diff_text

ALPHABET = "ab \n🚀é字"
WORDS = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod".split()


def apply_changes(old: str, hunks: list[Hunk]) -> str:
    """Apply the delete/insert hunks to `old` by their offsets, last first."""
    text = old
    for hunk in reversed(hunks):
        if hunk.op == "delete":
            assert text[hunk.old_start : hunk.old_start + len(hunk.text)] == hunk.text
            text = text[: hunk.old_start] + text[hunk.old_start + len(hunk.text) :]
        elif hunk.op == "insert":
            text = text[: hunk.old_start] + hunk.text + text[hunk.old_start :]
    return text


def assert_valid(old: str, new: str, hunks: list[Hunk]) -> None:
    assert "".join(h.text for h in hunks if h.op != "insert") == old
    assert "".join(h.text for h in hunks if h.op != "delete") == new
    assert all(h.text for h in hunks), "no empty hunks"
    assert all(a.op != b.op for a, b in pairwise(hunks)), "merged"
    old_at = new_at = 0
    for hunk in hunks:
        assert (hunk.old_start, hunk.new_start) == (old_at, new_at)
        old_at += len(hunk.text) if hunk.op != "insert" else 0
        new_at += len(hunk.text) if hunk.op != "delete" else 0
    assert apply_changes(old, hunks) == new


def edit_distance(old: str, new: str) -> int:
    """Characters deleted plus inserted by a shortest edit script (via LCS)."""
    row = [0] * (len(new) + 1)
    for a in old:
        diagonal, row[0] = 0, 0
        for j, b in enumerate(new, 1):
            diagonal, row[j] = row[j], diagonal + 1 if a == b else max(row[j], row[j - 1])
    return len(old) + len(new) - 2 * row[-1]


def random_edit(text: str, rng: random.Random, edits: int) -> str:
    chars = list(text)
    for _ in range(edits):
        at = rng.randrange(len(chars) + 1)
        if chars and rng.random() < 0.5:
            del chars[at : at + rng.randrange(1, 5)]
        else:
            chars[at:at] = rng.choices(ALPHABET, k=rng.randrange(1, 4))
    return "".join(chars)


def prose(size: int, rng: random.Random) -> str:
    words: list[str] = []
    length = 0
    while length < size:
        words.append(rng.choice(WORDS) + ("\n" if rng.random() < 0.1 else " "))
        length += len(words[-1])
    return "".join(words)


def test_one_changed_character_is_one_delete_and_one_insert_between_equal_runs():
    assert diff_text("hello world", "hello wOrld") == [
        Hunk("equal", "hello w", 0, 0),
        Hunk("delete", "o", 7, 7),
        Hunk("insert", "O", 8, 7),
        Hunk("equal", "rld", 8, 8),
    ]


def test_pure_insertion_and_deletion():
    assert diff_text("ac", "abc") == [
        Hunk("equal", "a", 0, 0),
        Hunk("insert", "b", 1, 1),
        Hunk("equal", "c", 1, 2),
    ]
    assert diff_text("abc", "ac") == [
        Hunk("equal", "a", 0, 0),
        Hunk("delete", "b", 1, 1),
        Hunk("equal", "c", 2, 1),
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("", "", []),
        ("same", "same", [Hunk("equal", "same", 0, 0)]),
        ("", "new", [Hunk("insert", "new", 0, 0)]),
        ("old", "", [Hunk("delete", "old", 0, 0)]),
        ("abc", "xyz", [Hunk("delete", "abc", 0, 0), Hunk("insert", "xyz", 3, 0)]),
    ],
)
def test_edge_cases(old: str, new: str, expected: list[Hunk]):
    assert diff_text(old, new) == expected


def test_offsets_count_code_points_with_non_bmp_characters():
    hunks = diff_text("a🚀bé", "a🚀Xé")
    assert hunks == [
        Hunk("equal", "a🚀", 0, 0),
        Hunk("delete", "b", 2, 2),
        Hunk("insert", "X", 3, 2),
        Hunk("equal", "é", 3, 3),
    ]


def test_unicode_edits_keep_surrounding_emoji_and_accents_equal():
    old, new = "café 🚀 naïve 字", "café 🚀🚀 naïf 字"
    hunks = diff_text(old, new)
    assert_valid(old, new, hunks)
    assert sum(len(h.text) for h in hunks if h.op != "equal") == edit_distance(old, new)


def test_random_small_edits_are_valid_and_minimal():
    rng = random.Random(20240501)
    for _ in range(1500):
        old = "".join(rng.choices(ALPHABET, k=rng.randrange(0, 50)))
        new = random_edit(old, rng, rng.randrange(0, 6))
        hunks = diff_text(old, new)
        assert_valid(old, new, hunks)
        changed = sum(len(h.text) for h in hunks if h.op != "equal")
        assert changed == edit_distance(old, new), (old, new)


def test_random_edits_of_multiline_prose_are_valid():
    rng = random.Random(7)
    for _ in range(200):
        old = prose(rng.randrange(0, 3000), rng)
        new = random_edit(old, rng, rng.randrange(0, 30))
        assert_valid(old, new, diff_text(old, new))


def test_scattered_edits_in_a_large_text_stay_local():
    rng = random.Random(1)
    old = prose(200_000, rng)
    new = random_edit(old, rng, 20)
    hunks = diff_text(old, new)
    assert_valid(old, new, hunks)
    # Each edit touches a few characters: nearly everything stays equal.
    assert sum(len(h.text) for h in hunks if h.op == "equal") > len(old) - 200


def test_scattered_edits_in_a_large_single_line_stay_local():
    rng = random.Random(2)
    old = prose(200_000, rng).replace("\n", " ")
    new = random_edit(old, rng, 20).replace("\n", " ")
    hunks = diff_text(old, new)
    assert_valid(old, new, hunks)
    assert sum(len(h.text) for h in hunks if h.op == "equal") > len(old) - 200


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (prose(100_000, random.Random(3)), prose(100_000, random.Random(4))),
        ("".join(random.Random(5).choices("ab \n", k=100_000)), "x" * 100_000),
        ("a\n" * 50_000, "b\n" * 50_000),
        (" " * 100_000, " x" * 50_000),
    ],
    ids=["unrelated-prose", "disjoint", "repeated-lines", "repeated-chars"],
)
def test_very_different_large_texts_still_give_a_valid_diff(old: str, new: str):
    assert_valid(old, new, diff_text(old, new))


def test_shuffled_lines_keep_many_lines_equal():
    rng = random.Random(6)
    lines = [f"line {i} {'x' * rng.randrange(60)}\n" for i in range(3000)]
    shuffled = lines[:]
    rng.shuffle(shuffled)
    old, new = "".join(lines), "".join(shuffled)
    hunks = diff_text(old, new)
    assert_valid(old, new, hunks)
    assert sum(len(h.text) for h in hunks if h.op == "equal") > len(old) // 20
