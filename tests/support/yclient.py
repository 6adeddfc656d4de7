"""The suite's Yjs client: collab.client's `Session` (pycrdt Doc, y-websocket
protocol, collab's codec) with reconnecting off, plus what tests look at:
message counters, the close code, raw frames, an abort without a close frame.

One client, not two: the tests exercise the same client programs use. The
protocol is still checked against independent implementations: the npm Yjs
client (tests/interop) and the browser editor (tests/browser).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from pycrdt import Array, Awareness, Doc, Map, Text

from collab.client import ClientError, Session
from tests.support.waiting import TIMEOUT_S


class _Session(Session):
    """Sets `synced` at every sync step 2, as the tests' own client always did."""

    def __init__(self, url: str, synced: asyncio.Event, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self._synced_event = synced

    def _handle(self, frame: bytes | str) -> None:
        super()._handle(frame)
        if isinstance(frame, bytes) and frame[:2] == b"\x00\x01":
            self._synced_event.set()


class YClient:
    def __init__(self, url: str, *, doc: Doc[Any] | None = None) -> None:
        self.url = url
        self.doc: Doc[Any] = doc if doc is not None else Doc()
        self.session: Session | None = None
        self.synced = asyncio.Event()  # set at every sync step 2
        self._awareness: Awareness | None = None

    @property
    def text(self) -> Text:
        return self.doc.get("text", type=Text)

    def map(self, name: str = "map") -> Map:
        return self.doc.get(name, type=Map)

    def array(self, name: str = "array") -> Array:
        return self.doc.get(name, type=Array)

    @property
    def awareness(self) -> Awareness:
        if self._awareness is not None:
            return self._awareness
        return self._session.presence.awareness

    @awareness.setter
    def awareness(self, awareness: Awareness) -> None:
        self._awareness = awareness

    @property
    def _session(self) -> Session:
        assert self.session is not None, "not connected"
        return self.session

    async def connect(self, *, wait_synced: bool = True, **kwargs: Any) -> YClient:
        """Connect (kwargs go to websockets.connect); waits for the sync, or for the socket."""
        self.session = _Session(
            self.url, self.synced, doc=self.doc, reconnect=None, websocket_options=kwargs
        )
        self.session.start()
        await asyncio.wait_for(
            self.session.synced() if wait_synced else self.session.connected(), TIMEOUT_S
        )
        return self

    @property
    def received_updates(self) -> int:
        return 0 if self.session is None else self.session.stats.updates_received

    @property
    def received_messages(self) -> int:
        return 0 if self.session is None else self.session.stats.messages_received

    @property
    def close_code(self) -> int | None:
        return None if self.session is None else self.session.close_code

    @property
    def close_reason(self) -> str | None:
        return None if self.session is None else self.session.close_reason

    def is_saved(self) -> bool:
        """Every edit this client made has come back from the server: it is durable."""
        return self._session.is_saved

    async def send_raw(self, data: bytes | str) -> None:
        self._session.send_frame(data)

    async def set_presence(self, state: dict[str, Any]) -> None:
        self._session.presence.set(state)

    def presence_of_others(self) -> dict[int, Any]:
        return self._session.presence.others

    async def wait_closed(self, timeout_s: float = TIMEOUT_S) -> int | None:
        with contextlib.suppress(ClientError):
            await asyncio.wait_for(self._session.wait_closed(), timeout_s)
        return self.close_code

    async def close(self) -> None:
        """Close the socket, like a tab going away (no presence removal of its own)."""
        if self.session is None:
            return
        ws = self.session.websocket
        if ws is not None:
            await self.session.flush()
            await ws.close()
        await self.session.close()

    async def abort(self) -> None:
        """Drop the TCP connection with no close frame, like a crashed browser tab."""
        ws = self._session.websocket
        assert ws is not None
        ws.transport.abort()
        with contextlib.suppress(ClientError, TimeoutError):
            await asyncio.wait_for(self._session.wait_closed(), TIMEOUT_S)

    def presence_json(self) -> str:
        return json.dumps(self.presence_of_others(), sort_keys=True)


async def read_text(url: str) -> str:
    """Connect, sync, and return the document's "text" root as a fresh client sees it."""
    client = await YClient(url).connect()
    try:
        return str(client.text)
    finally:
        await client.close()


def text_edits(*pieces: str) -> list[bytes]:
    """The updates an editor sends when it appends `pieces` to Y.Text "text", one each."""
    doc: Doc = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text = doc.get("text", type=Text)
    for piece in pieces:
        text.insert(len(text), piece)
    return updates
