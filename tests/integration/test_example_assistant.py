"""examples/assistant.py, run as a program against a real server, while a person watches."""

from __future__ import annotations

import asyncio
import sys

from pycrdt import Text

from collab.client import connect
from tests.support.server import REPO
from tests.support.waiting import TIMEOUT_S, eventually

NAME = "Summariser"

TEXT = (
    "# Launch notes\n\n"
    "The launch moved to Friday because the database migration needs a second review. "
    "Lunch was good. "
    "The database migration review is owned by Ada, and the launch checklist by Bob.\n"
)


async def test_the_assistant_shows_its_cursor_appends_a_summary_and_leaves(server):
    root = f"ws://127.0.0.1:{server.port}/ws"
    async with connect(root, "notes") as person:
        text = person.doc.get("content", type=Text)
        text += TEXT
        await person.saved()
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(REPO / "examples" / "assistant.py"),
            root,
            "notes",
            "--linger-s",
            str(TIMEOUT_S / 10),  # long enough to see its cursor
            cwd=REPO,
            env={"PYTHONPATH": str(REPO)},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:

            def assistant() -> dict[str, object] | None:
                others = person.presence.others.values()
                return next((s for s in others if s.get("user", {}).get("name") == NAME), None)

            await eventually(lambda: "## Summary" in str(text), what="the summary arrives")
            state = await eventually(
                lambda: (s := assistant()) and s.get("cursor") and s, what="its cursor"
            )
            # the caret sits at the end of what it wrote: the end of the text
            assert state["cursor"]["anchor"]["item"] is None
            assert state["cursor"]["anchor"]["tname"] == "content"
            summary = str(text)[len(TEXT) :]
            assert summary.startswith("\n\n## Summary\n\n")
            assert "database migration" in summary and "Lunch" not in summary
        finally:
            out, err = await asyncio.wait_for(process.communicate(), TIMEOUT_S * 3)
        assert process.returncode == 0, err.decode()
        assert out.decode().strip() in summary
        await eventually(lambda: assistant() is None, what="it leaves the presence")
