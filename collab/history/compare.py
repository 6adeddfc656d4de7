"""Comparing two versions of a document: a pure job, run in a compute worker.

Bytes in, bytes out: both full states are rendered as JSON content
(collab.content), each text root is diffed by character (collab.history.textdiff),
other roots are compared as values, and the result is encoded as the response
body of `GET /api/documents/{name}/snapshots/{id}/diff` (its model is `DiffOut`
in collab.api.versions). The encoding happens here too, in the worker: the body
of a big diff is tens of MB of JSON, and encoding it is itself a stall for the
event loop that sends it.

Imports little on purpose: a worker process imports this module on its first job.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from collab.content import render_content
from collab.history.blame import BlameRun, blame
from collab.history.textdiff import Hunk, diff_text
from collab.storage.attribution import EditSession


@dataclass(frozen=True, slots=True)
class TextRootDiff:
    root: str
    hunks: list[Hunk]

    @property
    def inserted_chars(self) -> int:
        return sum(len(h.text) for h in self.hunks if h.op == "insert")

    @property
    def deleted_chars(self) -> int:
        return sum(len(h.text) for h in self.hunks if h.op == "delete")


@dataclass(frozen=True, slots=True)
class VersionDiff:
    text_roots: list[TextRootDiff]
    other_changed_roots: list[str]  # maps and arrays whose content differs


def compare_content(old: dict[str, Any], new: dict[str, Any]) -> VersionDiff:
    text_roots = []
    other_changed = []
    for root in sorted(old.keys() | new.keys()):
        before, after = old.get(root, ""), new.get(root, "")
        if isinstance(before, str) and isinstance(after, str):
            text_roots.append(TextRootDiff(root, diff_text(before, after)))
        elif before != after:
            other_changed.append(root)
    return VersionDiff(text_roots, other_changed)


def diff_body(
    document: str,
    snapshot_id: int,
    against: int | Literal["current"],
    old_state: bytes,
    new_state: bytes,
    attribution: tuple[Sequence[EditSession], Mapping[int, str], Mapping[int, bytes]] | None = None,
) -> bytes:
    """The diff response's JSON body: `old_state` (the snapshot) against `new_state`.
    With `attribution` (the document's sessions, client-id owners and restored
    versions' states, see collab.history.blame), each hunk
    names who wrote its text (`authors`, from blame of the side it is on)."""
    diff = compare_content(render_content(old_state), render_content(new_state))
    old_writers: dict[str, list[str | None]] = {}
    new_writers: dict[str, list[str | None]] = {}
    if attribution is not None:
        old_writers = _writers(blame(old_state, *attribution))
        new_writers = _writers(blame(new_state, *attribution))
    body = {
        "document": document,
        "snapshot_id": snapshot_id,
        "against": against,
        "text_roots": [
            {
                "root": root.root,
                "inserted_chars": root.inserted_chars,
                "deleted_chars": root.deleted_chars,
                "hunks": [
                    {
                        "op": h.op,
                        "text": h.text,
                        "old_start": h.old_start,
                        "new_start": h.new_start,
                        **_hunk_authors(h, old_writers.get(root.root), new_writers.get(root.root)),
                    }
                    for h in root.hunks
                ],
            }
            for root in diff.text_roots
        ],
        "other_changed_roots": diff.other_changed_roots,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def _writers(runs: dict[str, list[BlameRun]]) -> dict[str, list[str | None]]:
    """Per text root, the subject who wrote each character (None: unknown)."""
    return {
        root: [
            None if run.author is None else run.author.subject
            for run in root_runs
            for _ in run.text
        ]
        for root, root_runs in runs.items()
    }


def _hunk_authors(
    hunk: Hunk, old: list[str | None] | None, new: list[str | None] | None
) -> dict[str, list[str | None]]:
    """`{"authors": [...]}`: who wrote a hunk's text, in order of appearance."""
    writers, start = (old, hunk.old_start) if hunk.op == "delete" else (new, hunk.new_start)
    if writers is None:
        return {"authors": []}  # not attributed: the same shape, nobody named
    seen = dict.fromkeys(writers[start : start + len(hunk.text)])
    return {"authors": list(seen)}
