"""A document's text as a file: Markdown or plain text as it is, or HTML
rendered the way the editor's Markdown preview renders it (web/src/preview.js).

The preview runs marked (GFM: tables, strikethrough, task lists shown as ☐ / ☑)
and sanitises with DOMPurify. Here markdown-it-py renders the same CommonMark
with the same GFM extensions, and nh3 sanitises with the preview's rules:
- no script, no event handler or style attributes, no <style>, no forms or
  form controls, no audio / video / picture (remote media);
- the only classes kept are fenced code's `language-*`;
- ids get a `user-content-` prefix (a document cannot shadow a page's own ids);
- links open in a new tab with `rel="noopener noreferrer"`;
- images from other sites lose their `src` unless the server allows remote
  images (COLLAB_ALLOW_REMOTE_IMAGES), as in the preview.
One difference: bare URLs are not made links (marked's GFM autolinks need
linkify-it-py, which collab does not depend on); `<https://...>` links are.

Pure functions of their input; nothing here touches a room or the event loop's
state, so the API may run them in a thread.
"""

from __future__ import annotations

import html
import json
from typing import Any, Literal
from urllib.parse import urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.rules_core import StateCore
from pycrdt import Doc

from collab.content import render_content
from collab.history.text_edits import text_root

ExportFormat = Literal["markdown", "html", "text", "json"]
# format -> media type, file extension
MEDIA_TYPES: dict[str, tuple[str, str]] = {
    "markdown": ("text/markdown; charset=utf-8", "md"),
    "html": ("text/html; charset=utf-8", "html"),
    "text": ("text/plain; charset=utf-8", "txt"),
    "json": ("application/json", "json"),
}

# DOMPurify's HTML profile, less the preview's FORBID_TAGS (nh3's defaults hold
# no script, style, form, media or form control to begin with).
_TAGS = set(nh3.ALLOWED_TAGS)
_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"id", "title", "lang", "dir"},
    "a": {"href", "hreflang", "title"},
    "img": {"src", "alt", "title", "width", "height"},
    "code": {"class"},
    "pre": {"class"},
    "th": {"align", "colspan", "rowspan", "scope"},
    "td": {"align", "colspan", "rowspan"},
    "ol": {"start"},
}
_URL_SCHEMES = {"http", "https", "mailto", "tel", "data"}
_TASK_MARKS = {"[ ] ": "☐ ", "[x] ": "☑ ", "[X] ": "☑ "}


def export_document(
    state: bytes, name: str, export_format: ExportFormat, root: str, *, allow_remote_images: bool
) -> str:
    """Document `name`'s full state as a file's text. Markdown and text are the
    text root as it is; JSON is GET /api/documents/{name}'s body. CPU-bound for
    a big document: callers run it in a thread."""
    if export_format == "json":
        return json.dumps({"name": name, "content": render_content(state)}, ensure_ascii=False)
    text = document_text(state, root)
    if export_format == "html":
        return html_page(name, render_html(text, allow_remote_images=allow_remote_images))
    return text


def document_text(state: bytes, root: str) -> str:
    """The characters of text root `root` of a full-state update (embeds left out)."""
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    return str(text_root(doc, root))


def render_html(markdown: str, *, allow_remote_images: bool) -> str:
    """Markdown as sanitised HTML, as the editor's preview shows it."""
    rendered = _markdown_renderer().render(markdown)

    def keep(tag: str, attribute: str, value: str) -> str | None:
        if attribute == "class":
            kept = [name for name in value.split() if _is_language_class(name)]
            return " ".join(kept) or None
        if tag == "a" and attribute == "href" and value.strip().lower().startswith("data:"):
            return None
        if tag == "img" and attribute == "src" and not allow_remote_images and _is_remote(value):
            return None
        return value

    return nh3.clean(
        rendered,
        tags=_TAGS,
        attributes=_ATTRIBUTES,
        attribute_filter=keep,
        url_schemes=_URL_SCHEMES,
        set_tag_attribute_values={"a": {"target": "_blank"}},
        link_rel="noopener noreferrer",
        id_prefix="user-content-",
    )


def html_page(title: str, fragment: str) -> str:
    """A standalone HTML file around a rendered fragment."""
    return (
        '<!doctype html>\n<html>\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n</head>\n<body>\n{fragment}</body>\n</html>\n"
    )


def _markdown_renderer() -> MarkdownIt:
    """CommonMark with raw HTML (sanitised afterwards), GFM tables and
    strikethrough, task-list marks as characters and table alignment as the
    `align` attribute (markdown-it writes a style attribute, which the
    sanitiser drops, as the preview's does)."""
    renderer = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
    renderer.core.ruler.push("collab_preview", _like_the_preview)
    return renderer


def _like_the_preview(state: StateCore) -> None:
    in_item = False
    for token in state.tokens:
        if token.type == "list_item_open":
            in_item = True
        elif token.type in ("th_open", "td_open"):
            style = str(token.attrs.pop("style", ""))
            if style.startswith("text-align:"):
                token.attrs["align"] = style.removeprefix("text-align:")
        elif token.type == "inline" and in_item:
            in_item = False
            _task_mark(token.children or [])
        elif token.type != "paragraph_open":
            in_item = False


def _task_mark(children: list[Any]) -> None:
    """GFM task lists, as the preview's marked renderer shows them: a ☐ or ☑
    character in place of `[ ] ` / `[x] ` at the start of a list item."""
    if not children or children[0].type != "text":
        return
    first = children[0]
    mark = _TASK_MARKS.get(first.content[:4])
    if mark is not None:
        first.content = mark + first.content[4:]


def _is_language_class(name: str) -> bool:
    language = name.removeprefix("language-")
    return language != name and bool(language) and all(c.isalnum() or c in "_+#-" for c in language)


def _is_remote(url: str) -> bool:
    """Whether an image URL names another site (`data:` and relative ones do not)."""
    cleaned = url.strip()
    if cleaned.startswith("//"):
        return True
    scheme = urlsplit(cleaned).scheme.lower()
    return scheme not in ("", "data")
