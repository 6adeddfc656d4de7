"""A small assistant that works in a document alongside people, with collab.client.

It joins a document, shows up in the editors as "Summariser" with its cursor at
the end of the text (where it is about to write), appends a short summary of the
text, waits until the summary is durable on the server, and leaves (its cursor
and name disappear from the editors).

The summary is extractive and needs no network or model: the sentences whose
words occur most often in the whole text, in their original order.

    python examples/assistant.py ws://localhost:8000/ws notes
    python examples/assistant.py ws://localhost:8000/ws notes --token "$TOKEN"

The server URL is the WebSocket root (what y-websocket calls `serverUrl`); the
editor's text is the root "content".
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections import Counter

from pycrdt import Text

from collab.client import connect

ROOT = "content"  # the browser editor's Y.Text
HEADING = "## Summary"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WORD = re.compile(r"[^\W\d_]{4,}")  # words of four letters or more: skips most fillers


def summarise(text: str, sentences: int = 2) -> str:
    """The `sentences` sentences of `text` that best represent it, in text order."""
    body = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
    candidates = [s.strip() for s in _SENTENCE_END.split(body.replace("\n", " ")) if s.strip()]
    frequency = Counter(word.lower() for word in _WORD.findall(body))

    def score(sentence: str) -> float:
        words = [word.lower() for word in _WORD.findall(sentence)]
        return sum(frequency[word] for word in words) / (len(words) or 1)

    best = sorted(range(len(candidates)), key=lambda i: score(candidates[i]), reverse=True)
    return " ".join(candidates[i] for i in sorted(best[:sentences]))


async def assist(
    server_url: str, document: str, *, token: str | None = None, linger_s: float = 1.0
) -> str:
    """Append a summary to `document`; returns it once the server has stored it."""
    async with connect(server_url, document, token=token) as session:
        session.presence.set({"user": {"name": "Summariser", "color": "#0e7490"}})
        text = session.doc.get(ROOT, type=Text)
        session.presence.set_cursor(ROOT, len(str(text)))  # where it will write
        summary = summarise(str(text)) or "(nothing to summarise yet)"
        text += f"\n\n{HEADING}\n\n{summary}\n"  # one transaction: one edit for the others
        session.presence.set_cursor(ROOT, len(str(text)))
        await session.saved()
        await asyncio.sleep(linger_s)  # let people see who wrote it before it leaves
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "server_url", help="the server's WebSocket root, e.g. ws://localhost:8000/ws"
    )
    parser.add_argument("document", help="the document's name")
    parser.add_argument("--token", help="an access token with write access to the document")
    parser.add_argument("--linger-s", type=float, default=1.0, help="stay this long after writing")
    args = parser.parse_args()
    summary = asyncio.run(
        assist(args.server_url, args.document, token=args.token, linger_s=args.linger_s)
    )
    print(summary)


if __name__ == "__main__":
    main()
