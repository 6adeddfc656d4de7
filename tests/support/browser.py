"""Drive the built web client in Debian's Chromium through Playwright.

Playwright's own browser download does not work here, so it launches
/usr/bin/chromium (`apt-get install chromium`). Every page's console errors and
uncaught exceptions are collected; a test fails if normal use produced any.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Error,
    Page,
    async_playwright,
)

from tests.support.server import REPO, RunningServer
from tests.support.waiting import TIMEOUT_S, eventually

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
BUILT_CLIENT = REPO / "web" / "dist"
ARTIFACTS = REPO / "tests" / "artifacts"
TIMEOUT_MS = TIMEOUT_S * 1000
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

# The editor's text as a person sees it: every line, without the remote cursor
# widgets (their name labels are text too) or the empty-document placeholder.
_EDITOR_TEXT_JS = """content => Array.from(content.querySelectorAll('.cm-line'), line => {
    const copy = line.cloneNode(true)
    copy.querySelectorAll('.cm-ySelectionCaret, .cm-placeholder').forEach(n => n.remove())
    return copy.textContent
}).join('\\n')"""


def require_browser_and_client() -> None:
    """Fail, never skip: a missing browser or bundle must not look like a pass."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `apt-get install -y chromium` (.ci/run does it)")
    if not (BUILT_CLIENT / "editor.html").is_file():
        pytest.fail(f"{BUILT_CLIENT} is not built: run `make install` (npm ci + esbuild in web/)")


@contextlib.asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    require_browser_and_client()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=TIMEOUT_MS * 3
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Person:
    """One person: their own browser context (storage, network), one page."""

    name: str
    context: BrowserContext
    page: Page
    errors: list[str] = field(default_factory=list)

    async def text(self) -> str:
        return await self.page.locator(".cm-content").evaluate(_EDITOR_TEXT_JS)

    async def wait_for_text(self, expected: str, *, what: str = "") -> None:
        async def matches() -> bool:
            return await self.text() == expected

        try:
            await eventually(matches, what=what or f"{self.name} sees {expected!r}")
        except AssertionError as exc:
            raise AssertionError(
                f"{self.name} sees {await self.text()!r}, not {expected!r}"
            ) from exc

    async def type(self, text: str) -> None:
        await self.page.locator(".cm-content").focus()
        await self.page.keyboard.type(text)

    async def cursor_labels(self) -> list[str]:
        return await self.page.locator(".cm-ySelectionInfo").all_inner_texts()

    async def present_names(self) -> list[str]:
        return await self.page.locator("#presence .presence-name").all_inner_texts()

    def collect_errors(self, page: Page) -> None:
        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                self.errors.append(f"console: {message.text} ({message.location})")

        def on_page_error(error: Error) -> None:
            self.errors.append(f"uncaught: {error.message}\n{error.stack}")

        page.on("console", on_console)
        page.on("pageerror", on_page_error)


class People:
    """Opens editors on a running server, one browser context per person."""

    def __init__(self, browser: Browser, server: RunningServer) -> None:
        self.browser = browser
        self.server = server
        self.people: list[Person] = []

    async def new(self, name: str, viewport: dict[str, int] | None = None) -> Person:
        context = await self.browser.new_context(viewport=viewport or LAPTOP)
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()
        person = Person(name, context, page)
        person.collect_errors(page)
        self.people.append(person)
        return person

    async def open_editor(
        self, name: str, document: str, *, viewport: dict[str, int] | None = None, query: str = ""
    ) -> Person:
        """A first visit: the page asks for a name (prefilled), we give `name`."""
        person = await self.new(name, viewport)
        await person.page.goto(f"{self.server.http_url}/d/{document}{query}")
        dialog = person.page.locator("#user-dialog")
        await dialog.locator("input[name=name]").fill(name)
        await dialog.locator("button[value=save]").click()
        await person.page.locator("#status[data-state=connected]").wait_for()
        return person

    async def open_pair(self, document: str, text: str) -> tuple[Person, Person]:
        """Ada and Bob in one document: Ada has typed `text`, and Bob sees it."""
        ada = await self.open_editor("Ada", document)
        bob = await self.open_editor("Bob", document)
        await ada.type(text)
        await bob.wait_for_text(text)
        return ada, bob

    async def close(self, person: Person) -> None:
        await person.context.close()

    def errors(self) -> list[str]:
        return [f"{p.name}: {e}" for p in self.people for e in p.errors]


async def save_stacked(browser: Browser, pages: list[Page], path: Path, height: int = 320) -> Path:
    """One PNG of the top of several pages, one above the other (an artifact to look at)."""
    clip = {"x": 0, "y": 0, "width": LAPTOP["width"], "height": height}
    shots = [base64.b64encode(await page.screenshot(clip=clip)).decode() for page in pages]
    images = "".join(
        f'<img src="data:image/png;base64,{shot}" style="display:block;'
        'border-bottom:4px solid #444">'
        for shot in shots
    )
    context = await browser.new_context(viewport={"width": LAPTOP["width"], "height": height})
    page = await context.new_page()
    await page.set_content(f'<body style="margin:0">{images}</body>')
    path.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(path), full_page=True)
    await context.close()
    return path
