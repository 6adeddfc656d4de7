"""A character-level text diff that keeps unchanged runs intact.

A restore turns "current text -> snapshot text" into CRDT operations, and every
character the diff calls "equal" keeps its Yjs item, so remote cursors and
concurrent edits anchored there survive. The diff must therefore be close to
minimal, yet bounded in time on large or unrelated texts.

How: trim the common prefix and suffix; a small remainder gets an exact
character diff, a large one is matched token by token, level by level - lines,
then words, then characters - refining only the regions a level could not
match. Each level uses Myers' O(ND) algorithm, which is fast when the texts
are similar; when it exceeds its edit limit, unique tokens common to both sides
(patience anchors) split the region into gaps, each tried again. A work budget
shared by the whole call bounds the total effort: once it is spent, what is
left unmatched is reported as delete + insert, which is correct, only coarser.

Invariants: no empty hunks, no two adjacent hunks with the same op, a delete
always precedes the insert of the same changed region; concatenating the
equal and delete hunks gives `old`, the equal and insert hunks give `new`.
Offsets are Python str indices (code points). Standard library only.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from itertools import accumulate
from typing import Any, Literal, TypeVar

Op = Literal["equal", "delete", "insert"]
T = TypeVar("T")

# Myers gives up past this many edits in one region (it costs O(D^2) steps and
# O(D^2) memory for the path); patience anchors take over from there.
MAX_EDITS_PER_REGION = 400
# Regions up to this many characters (both sides) skip lines and words.
CHARS_DIRECTLY_UP_TO = 2_000
# Total Myers steps one diff may take (about 0.5 s of work at most).
WORK_BUDGET_STEPS = 1_500_000

_WORD = re.compile(r"\w+|\s+|.", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Hunk:
    op: Op
    text: str
    old_start: int  # where this hunk starts in `old` (an insert: where it goes)
    new_start: int  # where this hunk starts in `new` (a delete: where it was)


class _Level(IntEnum):
    LINES = 0
    WORDS = 1
    CHARS = 2


@dataclass(slots=True)
class _Budget:
    steps_left: int

    def spend(self, steps: int) -> bool:
        self.steps_left -= steps
        return self.steps_left >= 0


# A span is (op, old_from, old_to, new_from, new_to) over the original strings.
_Span = tuple[Op, int, int, int, int]
# A matching block is (index_in_a, index_in_b, length).
_Block = tuple[int, int, int]


def diff_text(old: str, new: str) -> list[Hunk]:
    """The hunks that turn `old` into `new`, unchanged runs kept as "equal"."""
    budget = _Budget(WORK_BUDGET_STEPS)
    spans = _diff_region(old, new, 0, len(old), 0, len(new), _Level.LINES, budget)
    return _hunks_from_spans(old, new, spans)


# -- regions -------------------------------------------------------------------


def _diff_region(
    old: str, new: str, a0: int, a1: int, b0: int, b1: int, level: _Level, budget: _Budget
) -> Iterator[_Span]:
    prefix = _common_prefix_len(old, a0, a1, new, b0, b1)
    suffix = _common_suffix_len(old, a0 + prefix, a1, new, b0 + prefix, b1)
    if prefix:
        yield ("equal", a0, a0 + prefix, b0, b0 + prefix)
    a0, b0, a1, b1 = a0 + prefix, b0 + prefix, a1 - suffix, b1 - suffix
    if (a1 - a0) + (b1 - b0) <= CHARS_DIRECTLY_UP_TO:
        level = _Level.CHARS  # small enough for an exact character diff
    if a0 < a1 and b0 < b1:
        yield from _diff_tokens(old, new, a0, a1, b0, b1, level, budget)
    else:
        yield from _replace(a0, a1, b0, b1)
    if suffix:
        yield ("equal", a1, a1 + suffix, b1, b1 + suffix)


def _diff_tokens(
    old: str, new: str, a0: int, a1: int, b0: int, b1: int, level: _Level, budget: _Budget
) -> Iterator[_Span]:
    """Match the region at `level`; hand what stays unmatched to the next level."""
    a_seq, a_starts = _tokenize(old, a0, a1, level)
    b_seq, b_starts = _tokenize(new, b0, b1, level)
    blocks = _match(a_seq, b_seq, budget, use_anchors=level is not _Level.CHARS)
    i = j = 0
    for bi, bj, size in [*blocks, (len(a_seq), len(b_seq), 0)]:
        if bi > i or bj > j:
            yield from _refine(
                old, new, a_starts[i], a_starts[bi], b_starts[j], b_starts[bj], level, budget
            )
        if size:
            yield ("equal", a_starts[bi], a_starts[bi + size], b_starts[bj], b_starts[bj + size])
        i, j = bi + size, bj + size


def _refine(
    old: str, new: str, a0: int, a1: int, b0: int, b1: int, level: _Level, budget: _Budget
) -> Iterator[_Span]:
    if a0 < a1 and b0 < b1 and level is not _Level.CHARS:
        yield from _diff_region(old, new, a0, a1, b0, b1, _Level(level + 1), budget)
    else:
        yield from _replace(a0, a1, b0, b1)


def _replace(a0: int, a1: int, b0: int, b1: int) -> Iterator[_Span]:
    if a0 < a1:
        yield ("delete", a0, a1, b0, b0)
    if b0 < b1:
        yield ("insert", a1, a1, b0, b1)


def _tokenize(
    text: str, start: int, stop: int, level: _Level
) -> tuple[Sequence[Any], Sequence[int]]:
    """The tokens of text[start:stop] and where each starts in `text`, plus the end."""
    if level is _Level.CHARS:
        return text[start:stop], range(start, stop + 1)
    part = text[start:stop]
    tokens = part.splitlines(keepends=True) if level is _Level.LINES else _WORD.findall(part)
    return tokens, list(accumulate(map(len, tokens), initial=start))


def _hunks_from_spans(old: str, new: str, spans: Iterator[_Span]) -> list[Hunk]:
    """Join consecutive spans: equal ones into one hunk, changed ones into one
    delete followed by one insert (spans are contiguous, so ranges just extend)."""
    runs: list[list[Any]] = []  # [is_equal, old_from, old_to, new_from, new_to]
    for op, a0, a1, b0, b1 in spans:
        is_equal = op == "equal"
        if runs and runs[-1][0] == is_equal:
            runs[-1][2], runs[-1][4] = a1, b1
        else:
            runs.append([is_equal, a0, a1, b0, b1])
    hunks: list[Hunk] = []
    for is_equal, a0, a1, b0, b1 in runs:
        if is_equal:
            hunks.append(Hunk("equal", old[a0:a1], a0, b0))
            continue
        if a0 < a1:
            hunks.append(Hunk("delete", old[a0:a1], a0, b0))
        if b0 < b1:
            hunks.append(Hunk("insert", new[b0:b1], a1, b0))
    return hunks


# -- matching ------------------------------------------------------------------


def _match(a: Sequence[T], b: Sequence[T], budget: _Budget, *, use_anchors: bool) -> list[_Block]:
    """Matching blocks of `a` and `b`, in order; an empty list means "replace all"."""
    blocks = _myers(a, b, 0, len(a), 0, len(b), budget)
    if blocks is not None or not use_anchors:
        return blocks or []
    anchors = _patience_anchors(a, b)
    if not anchors:
        return []
    found: list[_Block] = []
    i = j = 0
    for ai, bj in [*anchors, (len(a), len(b))]:
        found.extend(_myers(a, b, i, ai, j, bj, budget) or [])
        if ai < len(a):
            found.append((ai, bj, 1))
        i, j = ai + 1, bj + 1
    return found


def _patience_anchors(a: Sequence[T], b: Sequence[T]) -> list[tuple[int, int]]:
    """Pairs of tokens unique on both sides, the longest run in the same order."""
    a_counts, b_counts = Counter(a), Counter(b)
    b_index = {token: j for j, token in enumerate(b) if b_counts[token] == 1}
    pairs = [
        (i, b_index[token])
        for i, token in enumerate(a)
        if a_counts[token] == 1 and token in b_index
    ]
    return _longest_increasing(pairs)


def _longest_increasing(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The longest subsequence of `pairs` (sorted by i) increasing in j."""
    tails: list[int] = []  # tails[n] = smallest j ending a run of length n + 1
    tail_at: list[int] = []  # index in pairs of that run's last pair
    previous: list[int] = []
    for index, (_i, j) in enumerate(pairs):
        length = bisect_left(tails, j)
        if length == len(tails):
            tails.append(j)
            tail_at.append(index)
        else:
            tails[length], tail_at[length] = j, index
        previous.append(tail_at[length - 1] if length else -1)
    run: list[tuple[int, int]] = []
    index = tail_at[-1] if tail_at else -1
    while index >= 0:
        run.append(pairs[index])
        index = previous[index]
    return run[::-1]


def _myers(
    a: Sequence[T], b: Sequence[T], a0: int, a1: int, b0: int, b1: int, budget: _Budget
) -> list[_Block] | None:
    """Matching blocks of a shortest edit script of a[a0:a1] -> b[b0:b1], or None
    when it needs more edits than a region may have or the budget allows."""
    prefix = _common_prefix_len(a, a0, a1, b, b0, b1)
    suffix = _common_suffix_len(a, a0 + prefix, a1, b, b0 + prefix, b1)
    head = [(a0, b0, prefix)] if prefix else []
    tail = [(a1 - suffix, b1 - suffix, suffix)] if suffix else []
    x0, y0, n, m = a0 + prefix, b0 + prefix, a1 - a0 - prefix - suffix, b1 - b0 - prefix - suffix
    if n == 0 or m == 0:
        return head + tail
    trace = _myers_forward(a, b, x0, y0, n, m, budget)
    if trace is None:
        return None
    middle = [(x0 + x, y0 + y, size) for x, y, size in _myers_backtrack(trace, n, m)]
    return head + middle + tail


def _myers_forward(
    a: Sequence[T], b: Sequence[T], x0: int, y0: int, n: int, m: int, budget: _Budget
) -> list[list[int]] | None:
    """The furthest x reached on each diagonal after each number of edits d:
    trace[d][k + d] for diagonal k = x - y, -1 where it cannot be reached."""
    limit = min(n + m, MAX_EDITS_PER_REGION)
    offset = limit + 1
    reach = [-1] * (2 * limit + 3)  # step d reads only diagonals of step d - 1
    trace: list[list[int]] = []
    for d in range(limit + 1):
        low, high = max(-d, -m), min(d, n)  # diagonals inside the grid
        low += (low + d) % 2
        if not budget.spend((high - low) // 2 + 1):
            return None
        for k in range(low, high + 1, 2):
            if d:
                x = _step_into(reach[offset + k + 1], reach[offset + k - 1], k, n, m)[0]
            else:
                x = 0
            if 0 <= x < n and x - k < m and a[x0 + x] == b[y0 + x - k]:
                x += _common_prefix_len(a, x0 + x, x0 + n, b, y0 + x - k, y0 + m)
            reach[offset + k] = x
            if x >= n and x - k >= m:
                trace.append(reach[offset - d : offset + d + 1])
                return trace
        trace.append(reach[offset - d : offset + d + 1])
    return None


def _step_into(down: int, right: int, k: int, n: int, m: int) -> tuple[int, bool]:
    """Where diagonal k starts with one more edit, given the furthest x of its
    neighbours k + 1 (`down`) and k - 1 (`right`), and whether that edit is an
    insertion (a step down) rather than a deletion (a step right)."""
    from_down = down if down >= 0 and down - k - 1 < m else -1
    from_right = right + 1 if 0 <= right < n else -1
    if from_down >= from_right:
        return from_down, True
    return from_right, False


def _myers_backtrack(trace: list[list[int]], n: int, m: int) -> list[_Block]:
    blocks: list[_Block] = []
    x, y = n, m
    for d in range(len(trace) - 1, 0, -1):
        k, previous = x - y, trace[d - 1]
        down = previous[k + 1 + d - 1] if k + 1 <= d - 1 else -1
        right = previous[k - 1 + d - 1] if k - 1 >= -(d - 1) else -1
        start_x, is_insertion = _step_into(down, right, k, n, m)
        start_y = start_x - k
        if x > start_x:
            blocks.append((start_x, start_y, x - start_x))
        x, y = (start_x, start_y - 1) if is_insertion else (start_x - 1, start_y)
    if x:
        blocks.append((0, 0, x))
    return blocks[::-1]


# -- common runs ---------------------------------------------------------------


def _common_prefix_len(a: Sequence[T], a0: int, a1: int, b: Sequence[T], b0: int, b1: int) -> int:
    """Length of the common start of a[a0:a1] and b[b0:b1], by galloping over
    slices so that long runs are compared at C speed."""
    limit = min(a1 - a0, b1 - b0)
    if limit <= 0 or a[a0] != b[b0]:
        return 0
    low, step = 1, 1  # a[a0:a0+low] == b[b0:b0+low]
    while low < limit:
        high = min(low + step, limit)
        if a[a0 + low : a0 + high] != b[b0 + low : b0 + high]:
            return low + _common_prefix_len(a, a0 + low, a0 + high, b, b0 + low, b0 + high)
        low, step = high, step * 2
    return limit


def _common_suffix_len(a: Sequence[T], a0: int, a1: int, b: Sequence[T], b0: int, b1: int) -> int:
    limit = min(a1 - a0, b1 - b0)
    if limit <= 0 or a[a1 - 1] != b[b1 - 1]:
        return 0
    low, step = 1, 1
    while low < limit:
        high = min(low + step, limit)
        if a[a1 - high : a1 - low] != b[b1 - high : b1 - low]:
            return low + _common_suffix_len(a, a1 - high, a1 - low, b, b1 - high, b1 - low)
        low, step = high, step * 2
    return limit
