"""A program with collab.client shows up in the browser editor like a person."""

from __future__ import annotations

import pytest
from pycrdt import Text

from collab.client import connect
from tests.support.waiting import eventually

pytestmark = pytest.mark.browser

# The text before the Python client's caret, on the caret's line, as the page draws it.
_TEXT_BEFORE_CARET_JS = """caret => {
    const line = caret.closest('.cm-line')
    const range = document.createRange()
    range.setStart(line, 0)
    range.setEndBefore(caret)
    const copy = range.cloneContents()
    copy.querySelectorAll('.cm-ySelectionCaret').forEach(n => n.remove())
    return copy.textContent
}"""


async def test_the_python_clients_name_and_cursor_appear_in_the_editor(people, server):
    ada = await people.open_editor("Ada", "with-a-bot")
    await ada.type("Café 🚀 notes: the launch is on Friday.")
    root = f"ws://127.0.0.1:{server.port}/ws"
    async with connect(root, "with-a-bot") as bot:
        text = bot.doc.get("content", type=Text)
        await eventually(lambda: str(text).endswith("Friday."), what="Ada's text reaches Python")
        bot.presence.set({"user": {"name": "Summariser", "color": "#0e7490"}})
        bot.presence.set_cursor("content", str(text).index("the launch"))

        await eventually(lambda: _names_are(ada, ["Ada", "Summariser"]), what="presence bar")
        await eventually(lambda: _labels_are(ada, ["Summariser"]), what="its caret")
        caret = ada.page.locator(".cm-ySelectionCaret")
        assert await caret.evaluate(_TEXT_BEFORE_CARET_JS) == "Café 🚀 notes: "
        colour = await caret.evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(14, 116, 144)"  # #0e7490

        # Ada types before it: the caret stays on the same character.
        await ada.page.keyboard.press("Control+Home")
        await ada.type(">> ")
        await eventually(lambda: str(text).startswith(">> "))

        async def caret_stayed() -> bool:
            return await caret.evaluate(_TEXT_BEFORE_CARET_JS) == ">> Café 🚀 notes: "

        await eventually(caret_stayed, what="the caret stays before 'the launch'")

    await eventually(lambda: _labels_are(ada, []), what="it leaves: no caret")
    await eventually(lambda: _names_are(ada, ["Ada"]), what="it leaves the presence bar")


async def _labels_are(person, expected: list[str]) -> bool:
    return await person.cursor_labels() == expected


async def _names_are(person, expected: list[str]) -> bool:
    return await person.present_names() == expected
