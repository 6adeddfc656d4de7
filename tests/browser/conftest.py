from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser

from tests.support.browser import People, launch_chromium
from tests.support.server import RunningServer


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as running:
        yield running


@pytest.fixture
async def people(browser: Browser, server: RunningServer) -> AsyncIterator[People]:
    """Editors on the real server; no console errors may happen in normal use."""
    opened = People(browser, server)
    try:
        yield opened
    finally:
        for person in opened.people:
            await person.context.close()
    assert not opened.errors(), "errors in the browser console:\n" + "\n".join(opened.errors())
