"""Blame: who wrote each character of a document's text roots, and when.

Every character Yjs holds is an item named (client id, clock). The stored
attribution (collab.storage.attribution) says which author owns each client
id and which session created each clock range. What pycrdt cannot tell is
which item a character is (docs/attribution.md). So blame asks the Doc: on a
scratch copy it deletes, one session at a time, the clock ranges that session
created (an update holding only a delete set), and the text roots' change
events say exactly which positions went. Positions are UTF-8 byte offsets
(yrs's), mapped back to characters at the end. Content no session covers (made
before attribution existed) is attributed to its client id's owner, if known,
else to nobody.

A pure job, bytes and records in, runs out: it runs in a compute worker
(collab.history.workers) for big documents, never on the event loop.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc, Text, TextEvent, write_var_uint

from collab.content import root_kinds
from collab.history.textdiff import diff_text
from collab.protocol.codec import decode_state_vector
from collab.storage.attribution import ANONYMOUS, Author, ClockRange, EditSession


@dataclass(frozen=True, slots=True)
class Attribution:
    """Whose a character is: an author (None: unknown) and when (None: unknown)."""

    author: Author | None
    at: float | None
    source_version: int | None = None  # made by a restore of this version


@dataclass(frozen=True, slots=True)
class BlameRun:
    text: str
    author: Author | None
    at: float | None
    source_version: int | None = None  # made by a restore of this version

    def is_like(self, label: Attribution | BlameRun) -> bool:
        return (self.author, self.at, self.source_version) == (
            label.author,
            label.at,
            label.source_version,
        )


_UNKNOWN = Attribution(None, None)
_WHOLE_CLIENT = 1 << 53  # a clock range end beyond any real clock


def delete_set_update(ranges: Iterable[ClockRange]) -> bytes:
    """A Yjs v1 update with no structs and a delete set of `ranges`
    (y-protocols: structs per client, then the delete set per client)."""
    by_client: dict[int, list[tuple[int, int]]] = {}
    for client_id, start, end in ranges:
        if end > start:
            by_client.setdefault(client_id, []).append((start, end - start))
    out = bytearray(write_var_uint(0))
    out += write_var_uint(len(by_client))
    for client_id, spans in by_client.items():
        out += write_var_uint(client_id) + write_var_uint(len(spans))
        for start, length in sorted(spans):
            out += write_var_uint(start) + write_var_uint(length)
    return bytes(out)


class _Probe:
    """One text root: its original bytes still in the scratch text (as ranges of
    original offsets, in text order) and the labels given so far, as ranges. Work
    per probe is proportional to the number of ranges, not to the text's size."""

    def __init__(self, text: str) -> None:
        self.encoded = text.encode()
        self.alive: list[tuple[int, int]] = [(0, len(self.encoded))] if self.encoded else []
        self.labelled: list[tuple[int, int, Attribution]] = []
        self.current = _UNKNOWN

    def on_event(self, event: TextEvent) -> None:
        delta: list[dict[str, Any]] = getattr(event, "delta", [])  # set by pycrdt, in __slots__
        position = 0
        cuts: list[tuple[int, int]] = []  # (position, count) in the text before the event
        for op in delta:
            if "retain" in op:
                position += int(op["retain"])
            elif "delete" in op:
                count = int(op["delete"])
                cuts.append((position, count))
                position += count
        if cuts:
            self._cut(cuts)

    def _cut(self, cuts: list[tuple[int, int]]) -> None:
        kept: list[tuple[int, int]] = []
        position = 0  # of the current alive range's start, in the text before the event
        cut_index = 0
        for start, end in self.alive:
            length = end - start
            offset = 0
            while offset < length:
                if cut_index < len(cuts):
                    cut_at, cut_count = cuts[cut_index]
                else:
                    cut_at, cut_count = position + length + 1, 0
                here = position + offset
                if cut_at >= position + length:  # the next cut is past this range
                    kept.append((start + offset, end))
                    break
                if here < cut_at:  # keep up to the cut
                    kept.append((start + offset, start + cut_at - position))
                    offset = cut_at - position
                    continue
                taken = min(cut_count - (here - cut_at), length - offset)
                self.labelled.append((start + offset, start + offset + taken, self.current))
                offset += taken
                if here + taken >= cut_at + cut_count:
                    cut_index += 1
            position += length
        self.alive = kept

    def runs(self) -> list[BlameRun]:
        spans = sorted(self.labelled, key=lambda span: span[0])
        spans += [(start, end, _UNKNOWN) for start, end in self.alive]
        spans.sort(key=lambda span: span[0])
        runs: list[BlameRun] = []
        for start, end, label in spans:
            text = self.encoded[start:end].decode("utf-8", "replace")
            _append(runs, text, label)
        return runs


def _append(runs: list[BlameRun], text: str, label: Attribution | BlameRun) -> None:
    if runs and runs[-1].is_like(label):
        last = runs[-1]
        runs[-1] = BlameRun(last.text + text, last.author, last.at, last.source_version)
    else:
        runs.append(BlameRun(text, label.author, label.at, label.source_version))


def blame(
    state: bytes,
    sessions: Sequence[EditSession],
    owners: Mapping[int, str],
    sources: Mapping[int, bytes] = {},
) -> dict[str, list[BlameRun]]:
    """The runs of every text root of `state` (a full-state update). `sources`:
    the states of versions that restores restored (by id); text a restore
    brought back keeps the authors it had in that version."""
    runs = _runs_of(state, sessions, owners)
    for name, root_runs in runs.items():
        if any(run.source_version in sources for run in root_runs):
            runs[name] = _through_restores(name, root_runs, sessions, owners, sources)
    return runs


def _through_restores(
    name: str,
    runs: list[BlameRun],
    sessions: Sequence[EditSession],
    owners: Mapping[int, str],
    sources: Mapping[int, bytes],
) -> list[BlameRun]:
    """A restore re-creates text as new items. Where such text is, character
    for character, text of the version it restored (an "equal" stretch of the
    diff from that version to now), it is that version's author's."""
    current = "".join(run.text for run in runs)
    labels = [run for run in runs for _ in run.text]
    restored = {r.source_version for r in runs if r.source_version is not None}
    for version in sorted(v for v in restored if v in sources):
        old_runs = _runs_of(sources[version], sessions, owners).get(name, [])
        old_labels = [run for run in old_runs for _ in run.text]
        for hunk in diff_text("".join(run.text for run in old_runs), current):
            if hunk.op != "equal":
                continue
            for i in range(len(hunk.text)):
                if labels[hunk.new_start + i].source_version == version:
                    labels[hunk.new_start + i] = old_labels[hunk.old_start + i]
    regrouped: list[BlameRun] = []
    for char, label in zip(current, labels, strict=True):
        _append(regrouped, char, label)
    return regrouped


def _runs_of(
    state: bytes, sessions: Sequence[EditSession], owners: Mapping[int, str]
) -> dict[str, list[BlameRun]]:
    texts = [name for name, kind in root_kinds(state).items() if kind == "text"]
    if not texts:
        return {}
    scratch: Doc[Any] = Doc()
    scratch.apply_update(state)
    probes: dict[str, _Probe] = {}
    subscriptions = []
    for name in texts:
        root = scratch.get(name, type=Text)
        probe = probes[name] = _Probe(str(root))
        subscriptions.append(root.observe(probe.on_event))
    steps: list[tuple[Attribution, list[ClockRange]]] = [
        (Attribution(s.author, s.ended_at, s.source_version), list(s.ranges))
        for s in sessions
        if s.ranges
    ]
    present = decode_state_vector(scratch.get_state())
    steps += [
        (
            Attribution(Author(subject, is_verified=subject != ANONYMOUS), None),
            [(c, 0, _WHOLE_CLIENT)],
        )
        for c, subject in owners.items()
        if c in present
    ]
    for label, ranges in steps:
        for probe in probes.values():
            probe.current = label
        scratch.apply_update(delete_set_update(ranges))
    return {name: probe.runs() for name, probe in probes.items()}


def spans_deleted_by(
    state: bytes, ranges: Sequence[ClockRange]
) -> dict[str, list[tuple[int, int]]]:
    """Where, in each text root of `state`, the items `ranges` name are: the
    (start, end) character spans that deleting them would remove (a delete probe
    as blame's). Text roots they do not touch are left out."""
    texts = [name for name, kind in root_kinds(state).items() if kind == "text"]
    if not texts or not ranges:
        return {}
    scratch: Doc[Any] = Doc()
    scratch.apply_update(state)
    probes = {name: _Probe(str(scratch.get(name, type=Text))) for name in texts}
    subscriptions = [
        scratch.get(name, type=Text).observe(probe.on_event) for name, probe in probes.items()
    ]
    marked = Attribution(None, 0.0)
    for probe in probes.values():
        probe.current = marked
    scratch.apply_update(delete_set_update(ranges))
    del subscriptions
    spans: dict[str, list[tuple[int, int]]] = {}
    for name, probe in probes.items():
        cut = sorted((start, end) for start, end, label in probe.labelled if label is marked)
        if cut:
            chars = _chars_at(probe.encoded, [offset for span in cut for offset in span])
            spans[name] = [(chars[start], chars[end]) for start, end in cut]
    return spans


def _chars_at(encoded: bytes, offsets: list[int]) -> dict[int, int]:
    """Byte offset -> character offset in UTF-8 `encoded`, for ascending
    `offsets`, in one pass over the text."""
    chars: dict[int, int] = {}
    at = count = 0
    for offset in offsets:
        if offset not in chars:
            count += len(encoded[at:offset].decode("utf-8", "replace"))
            chars[offset] = count
            at = offset
    return chars


def blame_body(
    state: bytes,
    sessions: Sequence[EditSession],
    owners: Mapping[int, str],
    sources: Mapping[int, bytes] = {},
) -> dict[str, list[dict[str, Any]]]:
    """`blame` as the JSON the API returns (a compute worker's result)."""
    return {
        name: [
            {
                "text": run.text,
                "author": None if run.author is None else run.author.subject,
                "name": None if run.author is None else run.author.name,
                "verified": None if run.author is None else run.author.is_verified,
                "at": run.at,
            }
            for run in runs
        ]
        for name, runs in blame(state, sessions, owners, sources).items()
    }
