"""Restoring a live Doc to a snapshot with new operations (sans I/O: plain Docs)."""

from __future__ import annotations

import random
from typing import Any

from pycrdt import (
    Array,
    Assoc,
    Doc,
    Map,
    StickyIndex,
    Text,
    TransactionEvent,
    XmlElement,
    XmlFragment,
    XmlText,
)

from collab.content import render_content, root_kinds
from collab.history.restore import restore_doc


def content(doc: Doc) -> dict[str, Any]:
    """The document as JSON, without roots that are empty (a root never goes away)."""
    return {k: v for k, v in render_content(doc.get_update()).items() if v != ""}


def doc_from(update: bytes) -> Doc:
    doc: Doc = Doc()
    doc.apply_update(update)
    return doc


def synced_copy(doc: Doc) -> Doc:
    return doc_from(doc.get_update())


def formatted_runs(text: Text) -> list[tuple[Any, dict[str, Any]]]:
    """`Text.diff()` with neighbouring runs of equal formatting joined: yrs may
    split a run at a format marker that changes nothing."""
    runs: list[tuple[Any, dict[str, Any]]] = []
    for chunk, attrs in text.diff():
        if runs and isinstance(chunk, str) and isinstance(runs[-1][0], str):
            if runs[-1][1] == (attrs or {}):
                runs[-1] = (runs[-1][0] + chunk, runs[-1][1])
                continue
        runs.append((chunk, attrs or {}))
    return runs


def utf8_offset(text: Text, index: int) -> int:
    """pycrdt's position for the Python str index `index` of `text`."""
    return len(str(text)[:index].encode())


def exchange(a: Doc, b: Doc) -> None:
    """Deliver each side's missing updates to the other, as a provider would."""
    a_missing, b_missing = b.get_update(a.get_state()), a.get_update(b.get_state())
    a.apply_update(a_missing)
    b.apply_update(b_missing)


def count_transactions(doc: Doc) -> list[bytes]:
    updates: list[bytes] = []

    def record(event: TransactionEvent) -> None:
        updates.append(event.update)

    doc.observe(record)
    return updates


# -- root kinds ----------------------------------------------------------------


def test_root_kinds_follow_the_documented_inference_rules():
    doc = Doc()
    doc.get("notes", type=Text).insert(0, "hello")
    doc.get("meta", type=Map)["title"] = "Plan"
    doc.get("items", type=Array).extend([1, "two"])
    doc.get("blank", type=Text).insert(0, "gone")
    del doc.get("blank", type=Text)[:]
    doc.get("prose", type=XmlFragment).children.append(XmlElement("p", {}, [XmlText("x")]))
    assert root_kinds(doc.get_update()) == {
        "blank": "empty",
        "items": "array",
        "meta": "map",
        "notes": "text",
        "prose": "empty",
    }


def test_render_content_reads_an_xml_only_root_as_empty_text():
    doc = Doc()
    doc.get("prose", type=XmlFragment).children.append(XmlElement("p", {}, [XmlText("x")]))
    assert render_content(doc.get_update()) == {"prose": ""}


# -- text ----------------------------------------------------------------------


def test_restoring_text_with_emoji_and_accents_undoes_later_edits():
    doc = Doc()
    text = doc.get("text", type=Text)
    text.insert(0, "Hello 🚀 wörld, café 字!")
    snapshot = doc.get_update()
    text.insert(len(text), " 👋🏽 more")
    del text[0:1]  # "H"
    del text[5:9]  # the rocket: 4 UTF-8 bytes after "ello "
    text.insert(0, "¡Olé! ")
    assert str(text) != "Hello 🚀 wörld, café 字!"

    assert restore_doc(doc, snapshot) is True
    assert str(text) == "Hello 🚀 wörld, café 字!"
    assert content(doc) == content(doc_from(snapshot))


def test_pycrdt_text_positions_are_utf8_bytes():
    # The fact the restore converts for: Python offsets are code points.
    doc = Doc()
    text = doc.get("text", type=Text)
    text.insert(0, "a🚀bé")
    assert len(text) == 1 + 4 + 1 + 2
    text.insert(5, "X")  # after the rocket: byte 5, code point 2
    assert str(text) == "a🚀Xbé"


def test_restoring_a_text_full_of_multibyte_characters_is_exact():
    doc = Doc()
    text = doc.get("text", type=Text)
    text.insert(0, "🚀é字🚀é字🚀é字")
    snapshot = doc.get_update()
    del text[0:4]
    text.insert(len(text), "éé🚀")
    text.insert(9, "字")
    assert restore_doc(doc, snapshot)
    assert str(text) == "🚀é字🚀é字🚀é字"


def test_a_no_op_restore_changes_nothing_and_emits_no_update():
    doc = Doc()
    doc.get("text", type=Text).insert(0, "same 🚀")
    doc.get("meta", type=Map)["k"] = Map({"nested": Array([1, Text("t")])})
    updates = count_transactions(doc)
    assert restore_doc(doc, doc.get_update()) is False
    assert updates == []


def test_formatting_is_restored_range_by_range():
    doc = Doc()
    text = doc.get("text", type=Text)
    text.insert(0, "plain bold 🚀 italic end")
    text.format(6, 10, {"bold": True})
    text.format(16, 22, {"italic": True, "color": "red"})
    snapshot, wanted = doc.get_update(), text.diff()
    text.format(0, 16, {"bold": True})
    text.format(16, 22, {"italic": None, "color": "blue"})
    text.format(22, 26, {"underline": True})
    assert restore_doc(doc, snapshot)
    assert text.diff() == wanted


def test_reinserted_text_gets_the_snapshot_formatting_not_its_neighbours():
    doc = Doc()
    text = doc.get("text", type=Text)
    text.insert(0, "ABcd")
    text.format(0, 2, {"bold": True})
    snapshot, wanted = doc.get_update(), text.diff()
    del text[0:4]
    text.insert(0, "xy", {"italic": True})
    assert restore_doc(doc, snapshot)
    assert text.diff() == wanted == [("AB", {"bold": True}), ("cd", None)]


def test_random_edits_and_formatting_of_multibyte_text_are_restored_exactly():
    rng = random.Random(4242)
    alphabet = "ab é字🚀👋🏽\n"
    styles: list[dict[str, Any]] = [{"bold": True}, {"italic": True}, {"bold": None}, {"x": 1}]
    for _ in range(300):
        doc = Doc()
        text = doc.get("text", type=Text)
        text.insert(0, "".join(rng.choices(alphabet, k=rng.randrange(0, 30))))
        for _ in range(rng.randrange(0, 3)):
            restyle(text, rng, styles)
        snapshot, wanted = doc.get_update(), formatted_runs(text)
        for _ in range(rng.randrange(1, 8)):
            length = len(str(text))
            start = rng.randrange(length + 1)
            end = min(length, start + rng.randrange(1, 5))
            if rng.random() < 0.4 and start < end:
                del text[utf8_offset(text, start) : utf8_offset(text, end)]
            elif rng.random() < 0.5:
                restyle(text, rng, styles)
            else:
                inserted = "".join(rng.choices(alphabet, k=rng.randrange(1, 4)))
                text.insert(utf8_offset(text, start), inserted, rng.choice([None, {"u": True}]))
        restore_doc(doc, snapshot)
        assert formatted_runs(text) == wanted


def restyle(text: Text, rng: random.Random, styles: list[dict[str, Any]]) -> None:
    length = len(str(text))
    start = rng.randrange(length + 1)
    end = rng.randrange(start, length + 1)
    text.format(utf8_offset(text, start), utf8_offset(text, end), rng.choice(styles))


def test_embeds_are_restored_without_breaking_positions():
    doc = Doc()
    text = doc.get("text", type=Text)
    text.insert(0, "é🚀 before after")
    text.insert_embed(10, {"image": "cat.png"})
    snapshot, wanted = doc.get_update(), text.diff()
    text.insert_embed(0, {"image": "dog.png"})
    del text[11:12]  # the cat: after the dog (1), "é🚀 be" (10 bytes)
    text.insert(len(text), " tail 🚀")
    assert restore_doc(doc, snapshot)
    assert text.diff() == wanted


def test_string_embeds_are_told_apart_from_characters():
    # Text.diff() shows an embedded "é" like the character, yet it counts 1, not 2.
    doc = Doc()
    text = doc.get("text", type=Text)
    text.insert(0, "ab🚀")
    text.insert_embed(1, "é")
    snapshot, wanted = doc.get_update(), text.diff()
    text.insert(len(text), "é")
    text.insert_embed(0, "🚀")
    assert restore_doc(doc, snapshot)
    assert text.diff() == wanted
    assert str(text) == "ab🚀"


def test_an_ambiguous_string_embed_leaves_that_text_alone_instead_of_guessing():
    doc = Doc()
    text = doc.get("text", type=Text)
    text.insert(0, "S")
    text.insert_embed(1, "é")
    text.insert(2, "é", {"u": True})
    # Runs "S", "é", "é" (underlined) and str "Sé": either "é" may be the embed.
    doc.get("meta", type=Map)["k"] = "v1"
    snapshot = doc.get_update()
    text.insert(0, "new ")
    doc.get("meta", type=Map)["k"] = "v2"
    assert restore_doc(doc, snapshot)
    assert str(text) == "new Sé"
    assert doc.get("meta", type=Map)["k"] == "v1"


# -- maps, arrays, nesting -------------------------------------------------------


def test_map_keys_are_set_and_deleted_with_exact_types():
    doc = Doc()
    meta = doc.get("meta", type=Map)
    meta.update({"title": "Plan", "flag": True, "count": 1, "blob": b"\x00\x01", "list": [1]})
    snapshot = doc.get_update()
    meta["title"] = "Other"
    meta["flag"] = 1  # == True in Python, still a change
    del meta["count"]
    meta["extra"] = "new"
    meta["list"] = [1, 2]
    assert restore_doc(doc, snapshot)
    assert content(doc) == {
        "meta": {
            "title": "Plan",
            "flag": True,
            "count": 1.0,
            "blob": bytearray(b"\x00\x01"),
            "list": [1.0],
        }
    }
    assert meta["flag"] is True


def test_array_elements_are_diffed_and_equal_ones_untouched():
    doc = Doc()
    items = doc.get("items", type=Array)
    items.extend(["a", "b", Map({"k": "v"}), "c", 4])
    snapshot = doc.get_update()
    kept = items[2]
    items.insert(0, "new")
    del items[2]  # "b"
    items.append("tail")
    kept["k"] = "changed"
    kept["other"] = 1
    assert restore_doc(doc, snapshot)
    assert items.to_py() == ["a", "b", {"k": "v"}, "c", 4.0]
    # The nested map was restored in place, not replaced.
    assert kept.to_py() == {"k": "v"}


def test_nested_types_are_restored_in_place_or_replaced_by_copies():
    doc = Doc()
    meta = doc.get("meta", type=Map)
    meta["body"] = Text("nested 🚀 text")
    meta["tags"] = Array(["a", Map({"deep": Array([1, 2])})])
    meta["becomes_text"] = Map({"x": 1})
    meta["note"] = Text("formatted")
    meta["note"].format(0, 4, {"bold": True})
    snapshot = doc.get_update()
    body, tags = meta["body"], meta["tags"]
    body.insert(0, "very ")
    tags[1]["deep"].append(3)
    tags.append(Text("extra"))
    meta["becomes_text"] = Text("now text")
    meta["note"] = "plain string now"
    assert restore_doc(doc, snapshot)
    assert str(body) == "nested 🚀 text"
    assert tags.to_py() == ["a", {"deep": [1.0, 2.0]}]
    assert isinstance(meta["becomes_text"], Map)
    assert meta["becomes_text"].to_py() == {"x": 1.0}
    # A replaced value is a copy with types kept as types, formatting included.
    assert isinstance(meta["note"], Text)
    assert meta["note"].diff() == [("form", {"bold": True}), ("atted", None)]


def test_a_deleted_nested_type_is_recreated_as_shared_types():
    doc = Doc()
    items = doc.get("items", type=Array)
    items.append(Map({"title": Text("t"), "list": Array([Map({"k": 1})])}))
    snapshot = doc.get_update()
    items.clear()
    assert restore_doc(doc, snapshot)
    copy = items[0]
    assert isinstance(copy, Map)
    assert isinstance(copy["title"], Text)
    assert isinstance(copy["list"], Array)
    assert isinstance(copy["list"][0], Map)
    assert items.to_py() == [{"title": "t", "list": [{"k": 1.0}]}]


def test_roots_absent_or_empty_in_the_snapshot_are_emptied():
    doc = Doc()
    doc.get("kept", type=Text).insert(0, "kept")
    doc.get("emptied", type=Text).insert(0, "x")
    del doc.get("emptied", type=Text)[:]
    snapshot = doc.get_update()
    doc.get("emptied", type=Text).insert(0, "later text")
    doc.get("later_map", type=Map)["k"] = "v"
    doc.get("later_array", type=Array).extend([1, 2])
    assert restore_doc(doc, snapshot)
    assert content(doc) == {"kept": "kept"}
    assert len(doc.get("later_map", type=Map)) == 0
    assert len(doc.get("later_array", type=Array)) == 0


def test_xml_roots_are_left_untouched():
    doc = Doc()
    prose = doc.get("prose", type=XmlFragment)
    prose.children.append(XmlElement("p", {}, [XmlText("before")]))
    snapshot = doc.get_update()
    prose.children.append(XmlElement("p", {}, [XmlText("after")]))
    doc.get("text", type=Text).insert(0, "t")
    restore_doc(doc, snapshot)
    assert str(prose) == "<p>before</p><p>after</p>"
    assert str(doc.get("text", type=Text)) == ""


def test_restore_works_on_a_doc_whose_roots_were_never_typed():
    # The server's Doc only applies updates: nobody asked for a root's type.
    author = Doc()
    author.get("text", type=Text).insert(0, "v1 🚀")
    author.get("meta", type=Map)["k"] = "v1"
    snapshot = author.get_update()
    author.get("text", type=Text).insert(0, "v2 ")
    author.get("meta", type=Map)["k"] = "v2"
    server = synced_copy(author)
    assert restore_doc(server, snapshot)
    assert content(server) == {"text": "v1 🚀", "meta": {"k": "v1"}}


# -- collaboration ---------------------------------------------------------------


def test_restore_is_one_transaction_with_origin_restore():
    doc = Doc()
    doc.get("text", type=Text).insert(0, "one two three")
    doc.get("meta", type=Map)["k"] = "v"
    snapshot = doc.get_update()
    doc.get("text", type=Text).insert(0, "zero ")
    del doc.get("text", type=Text)[9:13]
    doc.get("meta", type=Map)["k"] = "w"
    doc.get("items", type=Array).append(1)
    updates = count_transactions(doc)
    origins: list[Any] = []
    text = doc.get("text", type=Text)
    subscription = text.observe(lambda event: origins.append(event.transaction.origin))
    assert restore_doc(doc, snapshot)
    assert len(updates) == 1
    assert origins == ["restore"]
    text.unobserve(subscription)
    assert content(doc) == {"text": "one two three", "meta": {"k": "v"}}


def test_concurrent_edit_during_restore_converges_and_is_kept():
    a = Doc()
    text = a.get("text", type=Text)
    text.insert(0, "The quick brown fox 🦊 jumps.")
    snapshot = a.get_update()
    text.insert(len(text), " Then it slept.")
    del text[0:4]  # "The "
    b = synced_copy(a)
    # B types while A restores; neither has seen the other's change yet.
    b_text = b.get("text", type=Text)
    at = str(b_text).index("brown")
    b_text.insert(len(str(b_text)[:at].encode()), "very ")
    assert restore_doc(a, snapshot)
    exchange(a, b)
    assert str(a.get("text", type=Text)) == str(b_text)
    assert str(b_text) == "The quick very brown fox 🦊 jumps."


def test_concurrent_map_and_array_edits_converge():
    a = Doc()
    a.get("meta", type=Map).update({"title": "v1"})
    a.get("items", type=Array).extend(["x", "y"])
    snapshot = a.get_update()
    a.get("meta", type=Map)["title"] = "v2"
    a.get("items", type=Array).append("z")
    b = synced_copy(a)
    b.get("items", type=Array).insert(0, "from b")
    b.get("meta", type=Map)["author"] = "b"
    restore_doc(a, snapshot)
    exchange(a, b)
    assert content(a) == content(b)
    assert content(a) == {
        "items": ["from b", "x", "y"],
        "meta": {"title": "v1", "author": "b"},
    }


def test_a_cursor_in_unchanged_text_stays_on_its_character():
    doc = Doc()
    text = doc.get("text", type=Text)
    text.insert(0, "alpha beta gamma delta")
    snapshot = doc.get_update()
    text.insert(0, "intro ")
    text.insert(len(text), " omega")
    del text[12:17]  # "beta "
    # A remote cursor just before "gamma", which the restore leaves alone.
    cursor = StickyIndex.new(text, str(text).index("gamma"), Assoc.AFTER)
    assert restore_doc(doc, snapshot)
    assert str(text) == "alpha beta gamma delta"
    assert str(text)[cursor.get_index() :].startswith("gamma")


def test_an_insert_anchored_in_unchanged_multibyte_text_lands_in_place():
    # The item identity check that works whatever the unit: B inserts between two
    # characters of a run the restore must not recreate, after seeing the restore.
    a = Doc()
    text = a.get("text", type=Text)
    text.insert(0, "début 🚀🚀 fin")
    snapshot = a.get_update()
    text.insert(0, "xx ")
    text.insert(len(text), " é")
    b = synced_copy(a)
    b_text = b.get("text", type=Text)
    between_rockets = len("xx début 🚀".encode())
    assert restore_doc(a, snapshot)
    b_text.insert(between_rockets, "|")  # concurrent with the restore
    exchange(a, b)
    assert str(a.get("text", type=Text)) == str(b_text) == "début 🚀|🚀 fin"


def test_an_image_only_text_root_is_text_and_restores():
    """A rich text holding only an embed must not be read (and rewritten) as an array."""
    version_doc: Doc = Doc()
    version_doc.get("text", type=Text).insert_embed(0, {"image": "cat.png"})
    version = version_doc.get_update()
    assert root_kinds(version) == {"text": "text"}
    for edit in ("type after the image", "delete the image"):
        live: Doc = Doc()
        live.apply_update(version)
        text = live.get("text", type=Text)
        if edit == "type after the image":
            text.insert(1, "hello")
        else:
            del text[0:1]
        assert restore_doc(live, version) is True
        assert text.diff() == [({"image": "cat.png"}, None)]
