"""Text edits by index and by replacement (collab.history.text_edits), the export
rendering (collab.history.export) and the editing API's rate limit, without a server."""

from __future__ import annotations

import pytest
from pycrdt import Assoc, Doc, Map, Text

from collab.api.edit_edge import EditRateLimit, decode_version, encode_version
from collab.history.export import export_document, render_html
from collab.history.text_edits import (
    Delete,
    Insert,
    Retain,
    TextEditRefused,
    apply_delta,
    replace_text,
    text_root,
)


def _text(content: str) -> tuple[Doc, Text]:
    doc: Doc = Doc()
    text = doc.get("content", type=Text)
    text += content
    return doc, text


def test_a_delta_counts_code_points_whatever_the_characters():
    _doc, text = _text("🚀 héllo wörld")
    apply_delta(text, [Retain(2), Delete(5), Insert("hi"), Retain(1), Insert("big ")])
    assert str(text) == "🚀 hi big wörld"


def test_a_delta_past_the_end_changes_nothing():
    _doc, text = _text("abc")
    with pytest.raises(TextEditRefused, match="reaches character 4"):
        apply_delta(text, [Insert("x"), Retain(2), Delete(2)])
    assert str(text) == "abc"


def test_a_root_holding_a_map_or_an_embed_is_not_edited_by_index():
    doc: Doc = Doc()
    doc.get("settings", type=Map)["theme"] = "dark"
    with pytest.raises(TextEditRefused, match="map"):
        text_root(doc, "settings")
    _doc, text = _text("ab")
    text.insert_embed(1, {"image": "x.png"})
    with pytest.raises(TextEditRefused, match="embedded"):
        apply_delta(text, [Retain(1), Insert("x")])


def test_replacing_text_keeps_positions_in_unchanged_text():
    _doc, text = _text("alpha beta gamma")
    cursor = text.sticky_index(len("alpha beta "), Assoc.AFTER)
    assert replace_text(text, "alpha BETA gamma 🚀") is True
    assert str(text) == "alpha BETA gamma 🚀"
    assert cursor.get_index() == len("alpha BETA ")
    assert replace_text(text, "alpha BETA gamma 🚀") is False


def test_html_is_sanitised_with_the_previews_rules():
    html = render_html(
        "<script>x()</script><img src=a.png onerror=x()><img src=https://evil.test/t.png>"
        '\n\n<p style="color:red" id="top">p</p>\n\n```js\n1\n```\n',
        allow_remote_images=False,
    )
    assert "<script" not in html and "onerror" not in html and "style=" not in html
    assert '<img src="a.png">' in html and "evil.test" not in html
    assert 'id="user-content-top"' in html and 'class="language-js"' in html
    allowed = render_html("![t](https://ok.test/i.png)", allow_remote_images=True)
    assert 'src="https://ok.test/i.png"' in allowed


def test_exports_give_the_text_back_exactly():
    doc, _text_root = _text("# T\r\n\ttab  \n")
    state = doc.get_update()
    for export_format in ("markdown", "text"):
        exported = export_document(state, "d", export_format, "content", allow_remote_images=False)
        assert exported == "# T\r\n\ttab  \n"
    page = export_document(state, "<d>", "html", "content", allow_remote_images=False)
    assert "<title>&lt;d&gt;</title>" in page and "<h1>T</h1>" in page


def test_the_rate_limit_refuses_past_the_burst_and_recovers():
    now = [0.0]
    limit = EditRateLimit(2.0, 3, clock=lambda: now[0])
    assert [limit.admit("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.admit("a") == pytest.approx(0.5)
    assert limit.admit("b") == 0.0  # each caller has its own bucket
    now[0] += 0.5
    assert limit.admit("a") == 0.0
    assert EditRateLimit(0, 0).admit("a") == 0.0  # 0: no limit


def test_versions_travel_as_base64url():
    state_vector = b"\x01\xf4\xa8\x86\xc3\xe0\x9c\xf6\x05\xf0\x2e"
    assert decode_version(f'"{encode_version(state_vector)}"') == state_vector
