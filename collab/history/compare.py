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
from dataclasses import dataclass
from typing import Any, Literal

from collab.content import render_content
from collab.history.textdiff import Hunk, diff_text


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
) -> bytes:
    """The diff response's JSON body: `old_state` (the snapshot) against `new_state`."""
    diff = compare_content(render_content(old_state), render_content(new_state))
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
                    {"op": h.op, "text": h.text, "old_start": h.old_start, "new_start": h.new_start}
                    for h in root.hunks
                ],
            }
            for root in diff.text_roots
        ],
        "other_changed_roots": diff.other_changed_roots,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
