"""Two people in one document, in real Chromium against the real server."""

from __future__ import annotations

import pytest
from pycrdt import Text

from tests.support.browser import ARTIFACTS, save_stacked
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser


async def test_typing_cursors_and_presence_reach_the_other_editor(people, browser):
    ada, bob = await people.open_pair("plans", "# Plans\n\nHello from Ada.\n")
    await bob.page.keyboard.press("Control+End")
    await bob.type("And Bob.")
    await ada.wait_for_text("# Plans\n\nHello from Ada.\nAnd Bob.")
    # Ada puts her cursor back at the start, so the two cursors are apart.
    await ada.page.keyboard.press("Control+Home")

    # Each sees the other's cursor, labelled with the other's name, in their colour.
    await eventually(lambda: _labels_are(ada, ["Bob"]), what="Ada sees Bob's cursor")
    await eventually(lambda: _labels_are(bob, ["Ada"]), what="Bob sees Ada's cursor")
    bob_label = bob.page.locator(".cm-ySelectionInfo")
    await bob_label.wait_for(state="visible")
    assert await bob_label.evaluate("e => getComputedStyle(e).opacity") == "1"

    # The presence bar: you first, then the others.
    assert await ada.present_names() == ["Ada", "Bob"]
    assert await bob.present_names() == ["Bob", "Ada"]

    shot = await save_stacked(browser, [ada.page, bob.page], ARTIFACTS / "two-editors.png")
    assert shot.stat().st_size > 10_000

    await people.close(bob)
    await eventually(lambda: _names_are(ada, ["Ada"]), what="Bob leaves Ada's presence bar")
    await eventually(lambda: _labels_are(ada, []), what="Bob's cursor is gone")


async def _labels_are(person, expected: list[str]) -> bool:
    return await person.cursor_labels() == expected


async def _names_are(person, expected: list[str]) -> bool:
    return await person.present_names() == expected


async def test_edits_made_offline_sync_when_the_connection_is_back(people):
    ada, bob = await people.open_pair("trip", "Day 1.")

    await ada.context.set_offline(True)
    await ada.page.locator("#status[data-state=offline]").wait_for()
    await ada.page.keyboard.press("Control+End")
    await ada.type(" Offline idea.")
    notice = ada.page.locator("#notice")
    await eventually(lambda: _contains(notice, "kept in this page and will sync"))
    await bob.page.keyboard.press("Control+Home")
    await bob.type("Plan: ")
    await ada.wait_for_text("Day 1. Offline idea.", what="Ada still sees only her own copy")
    assert await bob.text() == "Plan: Day 1."

    await ada.context.set_offline(False)
    await ada.page.locator("#status[data-state=connected]").wait_for()
    await ada.wait_for_text("Plan: Day 1. Offline idea.")
    await bob.wait_for_text("Plan: Day 1. Offline idea.")
    await eventually(lambda: _contains(notice, "Back online"))
    assert "synced" in await notice.inner_text()
    # Back at once in the others' presence bar, not at the next awareness renewal.
    await eventually(lambda: _names_are(bob, ["Bob", "Ada"]), timeout_s=5)


async def _contains(locator, text: str) -> bool:
    return text in await locator.inner_text()


async def test_a_pycrdt_client_and_the_browser_edit_the_same_text(people, connect):
    ada = await people.open_editor("Ada", "shared")
    client = await connect("shared")
    content = client.doc.get("content", type=Text)

    content.insert(0, "From Python. ")
    await ada.wait_for_text("From Python. ")
    await ada.page.keyboard.press("Control+End")
    await ada.type("From the browser.")
    await eventually(lambda: str(content) == "From Python. From the browser.")

    # A client that follows the awareness convention shows up in the presence bar.
    await client.set_presence({"user": {"name": "Robot", "color": "#047857"}})
    await eventually(lambda: _names_are(ada, ["Ada", "Robot"]))


async def test_undo_takes_back_only_your_own_edits(people):
    ada, bob = await people.open_pair("undo", "ada")
    await bob.page.keyboard.press("Control+End")
    await bob.type(" bob")
    await ada.wait_for_text("ada bob")

    await ada.page.locator("#undo").click()
    await ada.wait_for_text(" bob")
    await bob.wait_for_text(" bob")
    await ada.page.keyboard.press("Control+Shift+Z")
    await bob.wait_for_text("ada bob")


async def test_a_one_megabyte_document_stays_editable(people, connect):
    client = await connect("big")
    content = client.doc.get("content", type=Text)
    line = "The quick brown fox jumps over the lazy dog; a line of a long document.\n"
    big = line * (1_000_000 // len(line) + 1)
    content.insert(0, big)
    await eventually(lambda: client.received_updates >= 1, what="the big insert stored")

    ada = await people.open_editor("Ada", "big")
    # The editor renders the start of it (CodeMirror draws only what is in view).
    await ada.page.locator(".cm-line").first.wait_for()
    assert (await ada.page.locator(".cm-line").first.inner_text()).startswith("The quick")
    await ada.page.keyboard.press("Control+Home")
    await ada.type("Typed at the top. ")
    await ada.page.keyboard.press("Control+End")
    await ada.type("Typed at the end.")

    await eventually(
        lambda: str(content) == "Typed at the top. " + big + "Typed at the end.",
        what="both keystroke runs reach the other client",
    )
    assert len(big) >= 1_000_000
