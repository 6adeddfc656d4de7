"""COLLAB_ALLOW_REMOTE_IMAGES: the preview shows images from other sites only when set."""

from __future__ import annotations

import base64

import pytest
from playwright.async_api import Route
from pycrdt import Text

from collab.config import Settings
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII="
)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.replace(allow_remote_images=True)


async def test_remote_images_show_when_the_server_allows_them(people, connect):
    author = await connect("gallery")
    author.doc.get("content", type=Text).insert(
        0, "# Cats\n\n![a cat](https://images.example/cat.png)\n"
    )
    await eventually(lambda: author.received_updates >= 1)
    ada = await people.open_editor("Ada", "gallery")
    fetched: list[str] = []

    async def image_host(route: Route) -> None:
        fetched.append(route.request.url)
        await route.fulfill(body=PNG, content_type="image/png")

    await ada.context.route("https://images.example/**", image_host)
    await ada.page.locator("#toggle-preview").click()
    image = ada.page.locator("#preview img[alt='a cat']")
    await image.wait_for()
    assert await image.get_attribute("src") == "https://images.example/cat.png"

    async def loaded() -> bool:
        return await image.evaluate("img => img.complete && img.naturalWidth === 1")

    await eventually(loaded, what="the remote image loads under the page's policy")
    assert fetched == ["https://images.example/cat.png"]
