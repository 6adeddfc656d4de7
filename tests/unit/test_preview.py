"""A version's preview read from the room's own Doc is the one read from its state,
and reading it changes nothing another reader of that Doc sees."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pycrdt import Array, Doc, Map, Text, XmlElement, XmlFragment

from collab.content import PREVIEW_CHARS, live_text_preview, render_content, text_preview


def _received(doc: Doc[Any]) -> Doc[Any]:
    """The Doc a server holds: built from what clients sent, its roots never typed."""
    server: Doc[Any] = Doc()
    server.apply_update(doc.get_update())
    return server


def _texts(doc: Doc[Any]) -> None:
    doc.get("b", type=Text).insert(0, "second  root\n with   spaces")
    doc.get("a", type=Text).insert(0, "first")


def _mixed(doc: Doc[Any]) -> None:
    doc.get("settings", type=Map)["title"] = "a map, not a text"
    doc.get("items", type=Array).extend(["a list", 2])
    doc.get("body", type=Text).insert(0, "the only text")
    doc.get("prose", type=XmlFragment).children.append(XmlElement("p"))


def _long(doc: Doc[Any]) -> None:
    doc.get("a", type=Text).insert(0, "word " * 100)
    doc.get("z", type=Text).insert(0, "never reached")


def _embeds(doc: Doc[Any]) -> None:
    text = doc.get("rich", type=Text)
    text.insert(0, "before ")
    text.insert_embed(len(text), {"image": "x.png"})
    text.insert(len(text), " after")


@pytest.mark.parametrize("build", [_texts, _mixed, _long, _embeds, lambda doc: None])
def test_the_live_preview_is_the_preview_of_the_state(build: Callable[[Doc[Any]], None]) -> None:
    client: Doc[Any] = Doc()
    build(client)
    server = _received(client)
    state = server.get_update()
    content_before = render_content(state)
    preview = live_text_preview(server)
    assert preview == text_preview(state)
    assert len(preview) <= PREVIEW_CHARS
    # Nothing another reader sees changed: the content, the state, a map root.
    assert server.get_update() == state
    assert render_content(server.get_update()) == content_before
    if "settings" in content_before:
        assert server.get("settings", type=Map).to_py() == {"title": "a map, not a text"}
