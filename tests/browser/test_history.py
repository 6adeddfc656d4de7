"""The history panel: save a version, compare it, restore it for everyone."""

from __future__ import annotations

import httpx
import pytest
from pycrdt import Text

from tests.support.waiting import eventually

pytestmark = pytest.mark.browser


async def test_save_compare_and_restore_reach_every_open_editor(people, server):
    ada, bob = await people.open_pair("report", "First draft.")

    page = ada.page
    await page.locator("#toggle-history").click()
    await page.locator("#history input[name=label]").fill("Draft one")
    await page.locator("#history button[type=submit]").click()
    saved = page.locator("#history .version", has_text="Draft one")
    await saved.wait_for()
    assert "Ada" in await saved.inner_text()  # the author
    assert "named" in await saved.inner_text()  # the kind

    await page.keyboard.press("Control+End")
    await bob.page.keyboard.press("Control+End")
    await bob.type(" Bob rewrote it.")
    await ada.wait_for_text("First draft. Bob rewrote it.")

    # Selecting the version: a read-only preview with what changed since marked.
    await saved.click()
    view = page.locator("#version-view")
    await view.locator(".version-body ins").wait_for()
    assert await view.locator(".version-body ins").inner_text() == " Bob rewrote it."
    assert await view.locator(".version-body").inner_text() == "First draft. Bob rewrote it."
    assert await view.locator(".version-title").inner_text() == "Draft one"
    await view.locator("[data-mode=text]").click()
    assert await view.locator(".version-body").inner_text() == "First draft."
    assert await page.locator("#editor").is_hidden()  # the preview replaces the editor

    # Restore asks first; cancelling changes nothing.
    await view.locator(".restore-version").click()
    dialog = page.locator("#confirm-dialog")
    await dialog.locator("button[value=cancel]").click()
    assert await bob.text() == "First draft. Bob rewrote it."
    await view.locator(".restore-version").click()
    await dialog.locator("button[value=confirm]").click()

    await ada.wait_for_text("First draft.")
    await bob.wait_for_text("First draft.", what="Bob sees the restore without a reload")
    assert await page.locator("#editor").is_visible()
    await page.locator("#history .version[data-kind=pre-restore]").wait_for()

    # The restore can be undone from the notice it leaves.
    await page.locator("#notice button", has_text="Undo restore").click()
    await ada.wait_for_text("First draft. Bob rewrote it.")
    await bob.wait_for_text("First draft. Bob rewrote it.")

    async with httpx.AsyncClient(base_url=server.http_url) as http:
        content = (await http.get("/api/documents/report")).json()["content"]
    assert content == {"content": "First draft. Bob rewrote it."}


async def test_a_long_document_folds_unchanged_lines_around_a_change(people, connect):
    client = await connect("long")
    text = "".join(f"line {n}\n" for n in range(1, 201))
    client.doc.get("content", type=Text).insert(0, text)
    await eventually(lambda: client.received_updates >= 1)
    ada = await people.open_editor("Ada", "long")
    page = ada.page
    await page.locator("#toggle-history").click()
    await page.locator("#history input[name=label]").fill("Before the edit")
    await page.keyboard.press("Enter")
    version = page.locator("#history .version", has_text="Before the edit")
    await version.wait_for()

    await page.locator(".cm-content").focus()
    await page.keyboard.press("Control+Home")
    await page.keyboard.press("End")
    await page.keyboard.type(" (edited)")
    await version.click()
    body = page.locator("#version-view .version-body")
    await body.locator("ins").wait_for()
    assert await body.locator("ins").inner_text() == " (edited)"
    fold = body.locator(".diff-fold")
    assert await fold.inner_text() == "⋯ 197 unchanged lines"
    assert "line 200" not in await body.inner_text()
    await fold.click()
    assert await body.inner_text() == text.replace("line 1\n", "line 1 (edited)\n", 1)
    await page.keyboard.press("Escape")
    await page.locator("#version-view").wait_for(state="hidden")
