"""The editor on a server that requires tokens: roles shape what the page offers."""

from __future__ import annotations

import pytest

from collab.auth.issue import issue_token
from collab.auth.policy import Role
from collab.config import Settings
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser

SECRET = "browser-test-secret-that-is-long-enough-for-hs256"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(auth_secret=SECRET)


def _query(role: Role, subject: str) -> str:
    token = issue_token(SECRET, documents=["team-*"], role=role, ttl_s=600, subject=subject)
    return f"?token={token}"


async def test_a_read_token_follows_live_but_cannot_edit(people):
    wendy = await people.open_editor("Wendy", "team-notes", query=_query(Role.WRITE, "wendy"))
    rita = await people.open_editor("Rita", "team-notes", query=_query(Role.READ, "rita"))
    await wendy.type("Agenda")
    await rita.wait_for_text("Agenda")

    page = rita.page
    await page.locator("#access", has_text="Read-only").wait_for()
    assert await page.locator(".cm-content").get_attribute("contenteditable") == "false"
    await page.locator(".cm-content").click()
    await page.keyboard.type("nope")
    await wendy.type("!")
    await rita.wait_for_text("Agenda!")  # her keys changed nothing; Wendy's reached her
    assert await page.locator("#status").get_attribute("data-state") == "connected"
    await eventually(lambda: _names(wendy, ["Wendy", "Rita"]), what="a reader is present too")

    await page.locator("#toggle-history").click()
    await page.locator("#history .versions li").first.wait_for()
    assert await page.locator("#history .save-version").is_hidden()


async def test_a_write_token_saves_versions_but_only_admins_restore(people):
    wendy = await people.open_editor("Wendy", "team-plan", query=_query(Role.WRITE, "wendy"))
    await wendy.type("Plan A")
    page = wendy.page
    assert await page.locator("#access").is_hidden()
    await page.locator("#toggle-history").click()
    await page.locator("#history input[name=label]").fill("first")
    await page.locator("#history button[type=submit]").click()
    version = page.locator("#history .version", has_text="first")
    await version.wait_for()
    await version.click()
    view = page.locator("#version-view")
    await view.locator(".restore-note", has_text="admin").wait_for()
    assert await view.locator(".restore-version").is_hidden()

    admin = await people.open_editor("Ada", "team-plan", query=_query(Role.ADMIN, "ada"))
    await admin.page.locator("#toggle-history").click()
    await admin.page.locator("#history .version", has_text="first").click()
    await admin.page.locator("#version-view .restore-version").wait_for()


async def test_without_a_token_the_pages_say_one_is_needed(people, server):
    nobody = await people.new("Nobody")
    page = nobody.page
    await page.goto(server.http_url + "/")
    await page.locator("#list-error", has_text="needs an access token").wait_for()
    await page.goto(server.http_url + "/d/team-notes")
    await page.locator("#user-dialog button[value=save]").click()
    await page.locator("#status[data-state=closed]").wait_for()
    assert "not signed in" in await page.locator("#notice").inner_text()
    # Not normal use: the browser logs the refused requests (401) as console errors.
    assert nobody.errors and all("401" in error for error in nobody.errors), nobody.errors
    nobody.errors.clear()


async def _names(person, expected: list[str]) -> bool:
    return await person.present_names() == expected
