"""Who wrote what in the editor: the text coloured by author with a legend, the
activity timeline in the history panel, and undoing one person's session."""

from __future__ import annotations

import pytest

from tests.support.browser import ARTIFACTS, save_stacked

pytestmark = pytest.mark.browser


async def test_authors_view_timeline_and_undoing_a_session(people, browser):
    ada, bob = await people.open_pair("story", "Ada wrote this.")
    await bob.page.keyboard.press("Control+End")
    await bob.type(" Bob added this.")
    await ada.wait_for_text("Ada wrote this. Bob added this.")

    page = ada.page
    await page.locator("#toggle-authors").click()
    legend = page.locator("#author-legend")
    await legend.locator(".legend-item", has_text="Bob").wait_for()
    assert "Ada (unverified)" in await legend.inner_text()
    marks = page.locator("#editor .cm-author")
    ada_text = await page.locator('#editor .cm-author[data-author="name:Ada"]').all_inner_texts()
    bob_text = await page.locator('#editor .cm-author[data-author="name:Bob"]').all_inner_texts()
    assert "".join(ada_text) == "Ada wrote this."
    assert "".join(bob_text) == " Bob added this."
    assert await marks.count() >= 2

    await page.locator("#toggle-history").click()
    timeline = page.locator("#history .activity")
    bobs = timeline.locator('.activity-item[data-author="name:Bob"]')
    await bobs.wait_for()
    assert "+16" in await bobs.inner_text()
    await timeline.locator('.activity-item[data-author="name:Ada"]').wait_for()
    await save_stacked(browser, [page, bob.page], ARTIFACTS / "authors.png", height=480)
    await page.screenshot(path=str(ARTIFACTS / "authors-timeline.png"))

    # Undo Bob's session: his text goes for everyone, Ada's stays.
    await bobs.locator(".undo-session").click()
    await ada.wait_for_text("Ada wrote this.")
    await bob.wait_for_text("Ada wrote this.", what="Bob sees his session undone")
    await page.locator("#notice button", has_text="Bring it back").wait_for()
    await legend.locator(".legend-item", has_text="Ada").wait_for()
    await page.screenshot(path=str(ARTIFACTS / "authors-after-undo.png"))

    # Ada comes back: the timeline sums up what changed since her last visit.
    await bob.type(" Bob again.")
    await ada.wait_for_text("Ada wrote this. Bob again.")
    await page.reload()
    await page.locator("#status[data-state=connected]").wait_for()
    await page.locator("#toggle-history").click()
    since = page.locator("#history .since-visit")
    await since.wait_for()
    # Everything since her first visit: her typing and undoing, his two sessions.
    summary = await since.inner_text()
    assert "Bob (unverified) +27" in summary and "Ada (unverified) +15 \u221216" in summary
