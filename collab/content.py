"""A document's content as JSON, read from a full-state Yjs update.

The Yjs update format does not record a root's type: a root is whatever the
code that reads it says it is. So the type is inferred from what the root
holds, in this order (documented in the README):

1. it has keyed entries                       -> Y.Map   -> JSON object
2. its sequence reads as characters           -> Y.Text  -> string
3. its sequence holds values or shared types  -> Y.Array -> list
4. it is empty (or only XML)                  -> ""      (an empty text)

Nested shared types inside maps and arrays are converted recursively by
pycrdt's `to_py` (Y.Text -> string, Y.Map -> object, Y.Array -> list).
Each view is read from its own fresh Doc so that asking for one type can never
change how another view sees the root.
"""

from __future__ import annotations

from typing import Any

from pycrdt import Array, Doc, Map, Text

PREVIEW_CHARS = 200


def _doc_from(update: bytes) -> Doc:
    doc: Doc = Doc()
    doc.apply_update(update)
    return doc


def root_names(update: bytes) -> list[str]:
    return sorted(_doc_from(update).keys())


def render_content(update: bytes) -> dict[str, Any]:
    """Every root of the document, typed by the rules above."""
    names = root_names(update)
    if not names:
        return {}
    as_map, as_text, as_array = _doc_from(update), _doc_from(update), _doc_from(update)
    content: dict[str, Any] = {}
    for name in names:
        ymap = as_map.get(name, type=Map)
        if len(ymap):
            content[name] = ymap.to_py()
            continue
        text = str(as_text.get(name, type=Text))
        if text:
            content[name] = text
            continue
        array = as_array.get(name, type=Array)
        content[name] = array.to_py() if len(array) else ""
    return content


def text_preview(update: bytes, limit: int = PREVIEW_CHARS) -> str:
    """The start of the document's text roots, for listings of versions."""
    doc = _doc_from(update)
    parts = []
    for name in sorted(doc.keys()):
        text = str(doc.get(name, type=Text))
        if text:
            parts.append(text)
        if sum(map(len, parts)) >= limit:
            break
    return " ".join(" ".join(parts).split())[:limit]
