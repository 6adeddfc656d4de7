"""The document list, your name, the preview, tokens, phone width, deletion."""

from __future__ import annotations

import httpx
import pytest
from pycrdt import Text

from tests.support.browser import ARTIFACTS, PHONE
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser


async def test_document_list_shows_documents_and_who_is_in_them(people, server):
    ada = await people.open_editor("Ada", "minutes")
    await ada.type("Minutes of the meeting.")
    reader = await people.new("Reader")
    page = reader.page
    await page.goto(server.http_url + "/")
    row = page.locator("#documents tr[data-name=minutes]")
    await row.wait_for()
    await eventually(lambda: _has(row.locator(".present-cell"), "Ada"), what="Ada listed")
    assert await row.locator(".avatar").inner_text() == "A"
    await ada.page.close()
    await eventually(lambda: _has(row.locator(".present-cell"), "—"), what="Ada gone")
    assert (
        "ago" in await row.locator("td").nth(1).inner_text()
        or "now" in await row.locator("td").nth(1).inner_text()
    )

    # Opening a document from the list.
    await row.locator("a").click()
    await page.wait_for_url("**/d/minutes")
    await page.locator("#user-dialog button[value=save]").click()  # keep the generated name
    await reader.wait_for_text("Minutes of the meeting.")


async def _has(locator, text: str) -> bool:
    return text in await locator.inner_text()


async def test_creating_a_document_checks_its_name(people, server):
    reader = await people.new("Reader")
    page = reader.page
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.get("/api/documents")).json() == []
    await page.goto(server.http_url + "/")
    await page.locator("#documents", has_text="No documents yet").wait_for()
    name_input = page.locator("#new-name")
    message = page.locator("#create-message")

    await name_input.fill("Team notes!")
    await page.locator("#create-form button").click()
    assert "be a document name: use 1\u2013128 letters" in await message.inner_text()
    assert "“Team-notes”" in await message.inner_text()  # a suggestion
    assert page.url.endswith("/")

    await name_input.fill("a/b")
    await page.locator("#create-form button").click()
    assert "“a/b” can" in await message.inner_text()

    await name_input.fill("..")  # the server refuses it too: it would be another path
    await page.locator("#create-form button").click()
    assert "“..” can" in await message.inner_text()
    assert page.url.endswith("/")

    await name_input.fill("team-notes")
    await page.locator("#create-form button").click()
    await page.wait_for_url("**/d/team-notes")
    await page.locator("#user-dialog button[value=save]").click()
    await page.locator("#status[data-state=connected]").wait_for()
    await reader.type("hello")

    await page.goto(server.http_url + "/")
    await page.locator("#documents tr[data-name=team-notes]").wait_for()
    await name_input.fill("team-notes")
    await page.locator("#create-form button").click()
    await page.locator("#create-message", has_text="already exists").wait_for()
    await message.locator("a", has_text="Open it").click()
    await page.wait_for_url("**/d/team-notes")


async def test_your_name_is_asked_once_kept_and_editable(people, server):
    ada = await people.new("Ada")
    page = ada.page
    await page.goto(server.http_url + "/d/names")
    name_input = page.locator("#user-dialog input[name=name]")
    generated = await name_input.input_value()
    assert len(generated.split()) == 2  # "Adjective Animal", prefilled
    await name_input.fill("Ada Lovelace")
    await page.locator("#user-dialog .swatch").nth(3).click()
    await page.locator("#user-dialog button[value=save]").click()
    await page.locator("#status[data-state=connected]").wait_for()

    await page.reload()
    await page.locator("#status[data-state=connected]").wait_for()
    assert not await page.locator("#user-dialog").is_visible()  # asked once
    assert await ada.present_names() == ["Ada Lovelace"]

    bob = await people.open_editor("Bob", "names")
    await eventually(lambda: _names(bob, ["Bob", "Ada Lovelace"]))
    await page.locator(".presence-self").click()  # yourself in the presence bar
    await name_input.fill("Countess Ada")
    await page.locator("#user-dialog button[value=save]").click()
    await eventually(lambda: _names(bob, ["Bob", "Countess Ada"]), what="the rename reaches Bob")
    # The fourth swatch of the palette, #7e22ce, as Ada and Bob see her.
    purple = "rgb(126, 34, 206)"
    for avatar in (
        page.locator("#presence .is-self .avatar"),
        bob.page.locator("#presence .presence-person[data-name='Countess Ada'] .avatar"),
    ):
        assert await avatar.evaluate("e => getComputedStyle(e).backgroundColor") == purple


async def _names(person, expected: list[str]) -> bool:
    return await person.present_names() == expected


async def test_preview_renders_markdown_and_strips_scripts(people):
    ada = await people.open_editor("Ada", "preview")
    await ada.type(
        "# Title\n\nSome **bold** text.\n\n"
        '<img src="data:image/png;base64,AAAA" onerror="window.hacked = 1">'
        "<script>window.hacked = 2</script>"
    )
    page = ada.page
    await page.locator("#toggle-preview").click()
    preview = page.locator("#preview")
    await preview.locator("h1", has_text="Title").wait_for()
    await preview.locator("strong", has_text="bold").wait_for()
    assert await preview.locator("script").count() == 0
    assert await preview.locator("img").get_attribute("onerror") is None
    assert await page.evaluate("window.hacked") is None

    # It follows the text as people type.
    await page.locator(".cm-content").focus()
    await page.keyboard.press("Control+End")
    await page.keyboard.type("\n\n## Later")
    await preview.locator("h2", has_text="Later").wait_for()
    await page.locator("#toggle-preview").click()
    await preview.wait_for(state="hidden")


async def test_page_token_is_kept_and_sent_on_the_socket_and_rest_calls(people, server):
    reader = await people.new("Reader")
    page = reader.page
    sockets: list[str] = []
    auth_headers: list[str | None] = []
    page.on("websocket", lambda ws: sockets.append(ws.url))
    page.on(
        "request",
        lambda r: auth_headers.append(r.headers.get("authorization")) if "/api/" in r.url else None,
    )
    await page.goto(server.http_url + "/?token=s3cret%2Fx")
    await page.locator("#new-name").fill("tokened")
    await page.locator("#create-form button").click()
    await page.wait_for_url("**/d/tokened?token=s3cret%2Fx")
    await page.locator("#user-dialog button[value=save]").click()
    await page.locator("#status[data-state=connected]").wait_for()
    await page.locator("#toggle-history").click()
    await page.locator("#history .versions li").first.wait_for()
    assert sockets and all(url.endswith("/ws/tokened?token=s3cret%2Fx") for url in sockets)
    assert auth_headers and set(auth_headers) == {"Bearer s3cret/x"}
    assert await page.locator("#home-link").get_attribute("href") == "/?token=s3cret%2Fx"


async def test_phone_width_fits_the_screen(people, connect, browser):
    client = await connect("phone")
    client.doc.get("content", type=Text).insert(0, "# Notes\n\n" + "A long line of text. " * 40)
    await eventually(lambda: client.received_updates >= 1)
    await client.set_presence({"user": {"name": "Robot", "color": "#047857"}})
    ada = await people.open_editor("Ada", "phone", viewport=PHONE)
    page = ada.page
    await page.locator("#presence .presence-person").nth(1).wait_for()

    async def fits() -> bool:
        return await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")

    assert await fits()
    await page.locator("#toggle-preview").click()
    await page.locator("#preview h1").wait_for()
    assert await fits()
    await page.locator("#toggle-history").click()
    history = page.locator("#history")
    box = await history.bounding_box()
    assert box is not None and box["width"] == PHONE["width"]  # a full-width sheet
    await page.screenshot(path=str(ARTIFACTS / "phone-history.png"))
    await history.locator(".close-history").click()
    await history.wait_for(state="hidden")
    assert await fits()


async def test_a_deleted_document_says_so_and_stops(people, server):
    ada = await people.open_editor("Ada", "doomed")
    await ada.type("soon gone")
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        await eventually(lambda: _stored(http, "doomed"))
        assert (await http.delete("/api/documents/doomed")).status_code == 204
    page = ada.page
    await page.locator("#status[data-state=closed]").wait_for()
    assert "This document was deleted." in await page.locator("#notice").inner_text()


async def _stored(http: httpx.AsyncClient, name: str) -> bool:
    return any(d["name"] == name for d in (await http.get("/api/documents")).json())
