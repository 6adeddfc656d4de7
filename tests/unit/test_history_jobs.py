"""The history's jobs for the compute workers are pure: bytes in, bytes out. A
diff's body is the documented `DiffOut`; a restore's update, applied to the state
it was computed from, gives the version's content."""

from __future__ import annotations

import json
from typing import Any

from pycrdt import Array, Doc, Map, Text

from collab.api.versions import DiffOut
from collab.content import render_content
from collab.history.compare import diff_body
from collab.history.restore import apply_restore, restore_update


def _state(text: str, meta: dict[str, Any], items: list[Any]) -> bytes:
    doc: Doc[Any] = Doc()
    doc.get("text", type=Text).insert(0, text)
    doc.get("meta", type=Map).update(meta)
    doc.get("items", type=Array).extend(items)
    return doc.get_update()


async def test_a_diff_body_is_the_documented_response():
    old = _state("the quick brown fox", {"title": "Plan"}, [1, 2])
    new = _state("the quick red fox ✓", {"title": "Plan"}, [1, 3])
    body = diff_body("doc", 7, "current", old, new)
    parsed = json.loads(body)
    assert DiffOut.model_validate_json(body).model_dump(mode="json") == parsed
    assert parsed["document"] == "doc" and parsed["snapshot_id"] == 7
    assert parsed["against"] == "current"
    assert parsed["other_changed_roots"] == ["items"]
    [root] = parsed["text_roots"]
    assert "".join(h["text"] for h in root["hunks"] if h["op"] != "delete") == (
        "the quick red fox ✓"
    )


async def test_a_restore_update_turns_the_state_it_was_computed_from_into_the_version():
    version = _state("the original text", {"title": "Plan", "n": 1}, ["a", "b"])
    live: Doc[Any] = Doc()
    live.apply_update(version)
    live.get("text", type=Text).insert(0, "later: ")
    live.get("meta", type=Map)["n"] = 2
    live.get("items", type=Array).append("c")
    current = live.get_update()
    update = restore_update(current, version)
    assert update is not None
    apply_restore(live, update)
    assert render_content(live.get_update()) == render_content(version)
    assert restore_update(live.get_update(), version) is None, "nothing left to restore"
