"""A real Yjs client on pycrdt: its own Doc, speaking y-protocols over `websockets`.

It uses pycrdt's sync helpers, not collab's codec, so the server is checked
against an independent implementation of the protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import websockets
from pycrdt import (
    Array,
    Awareness,
    Doc,
    Map,
    Text,
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    handle_sync_message,
    read_message,
)
from websockets.asyncio.client import ClientConnection


class YClient:
    def __init__(self, url: str, *, doc: Doc | None = None) -> None:
        self.url = url
        self.doc: Doc = doc if doc is not None else Doc()  # an empty Doc is falsy
        self.awareness = Awareness(self.doc)
        self.ws: ClientConnection | None = None
        self.synced = asyncio.Event()
        self.received_updates = 0
        # What the server has sent, applied to a Doc of its own: this client's own
        # edits in it have come back, which means durable (one echo may carry
        # several edits: the server merges what arrives in one tick).
        self._from_server: Doc = Doc()
        self.received_messages = 0
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._subscription = self.doc.observe(self._on_local_change)
        self._applying_remote = False

    @property
    def text(self) -> Text:
        return self.doc.get("text", type=Text)

    def map(self, name: str = "map") -> Map:
        return self.doc.get(name, type=Map)

    def array(self, name: str = "array") -> Array:
        return self.doc.get(name, type=Array)

    async def connect(self, *, wait_synced: bool = True, **kwargs: Any) -> YClient:
        kwargs.setdefault("max_size", 64 * 1024 * 1024)
        self.ws = await websockets.connect(self.url, **kwargs)
        self._task = asyncio.create_task(self._receive())
        await self.ws.send(create_sync_message(self.doc))
        if wait_synced:
            await asyncio.wait_for(self.synced.wait(), 10)
        return self

    async def _receive(self) -> None:
        assert self.ws is not None
        try:
            async for message in self.ws:
                assert isinstance(message, bytes)
                self.received_messages += 1
                await self._handle(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            if self.ws.close_code is not None:
                self.close_code = self.ws.close_code
                self.close_reason = self.ws.close_reason

    async def _handle(self, message: bytes) -> None:
        assert self.ws is not None
        if message[0] == YMessageType.SYNC:
            self._applying_remote = True
            try:
                reply = handle_sync_message(message[1:], self.doc)
            finally:
                self._applying_remote = False
            if message[1] == YSyncMessageType.SYNC_STEP2:
                self.synced.set()
            if message[1] in (YSyncMessageType.SYNC_STEP2, YSyncMessageType.SYNC_UPDATE):
                self._from_server.apply_update(read_message(message[2:]))
            if message[1] == YSyncMessageType.SYNC_UPDATE:
                self.received_updates += 1
            if reply is not None:
                await self.ws.send(reply)
        elif message[0] == YMessageType.AWARENESS:
            self.awareness.apply_awareness_update(read_message(message[1:]), "remote")

    def _on_local_change(self, event: Any) -> None:
        if self._applying_remote or self.ws is None:
            return
        message = create_update_message(event.update)
        asyncio.get_running_loop().create_task(self._send_quietly(message))

    async def _send_quietly(self, message: bytes) -> None:
        assert self.ws is not None
        with contextlib.suppress(websockets.ConnectionClosed):
            await self.ws.send(message)

    def is_saved(self) -> bool:
        """Every edit this client made has come back from the server: it is durable."""
        me = self.doc.client_id
        saved = _state_vector(self._from_server.get_state()).get(me, 0)
        return saved >= _state_vector(self.doc.get_state()).get(me, 0)

    async def send_raw(self, data: bytes | str) -> None:
        assert self.ws is not None
        await self.ws.send(data)

    async def set_presence(self, state: dict[str, Any]) -> None:
        self.awareness.set_local_state(state)
        payload = self.awareness.encode_awareness_update([self.doc.client_id])
        await self.send_raw(create_awareness_message(payload))

    def presence_of_others(self) -> dict[int, Any]:
        return {k: v for k, v in self.awareness.states.items() if k != self.doc.client_id}

    async def wait_closed(self, timeout_s: float = 10) -> int | None:
        if self._task is not None:
            await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
        return self.close_code

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)

    async def abort(self) -> None:
        """Drop the TCP connection with no close frame, like a crashed browser tab."""
        assert self.ws is not None
        self.ws.transport.abort()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 5)

    def presence_json(self) -> str:
        return json.dumps(self.presence_of_others(), sort_keys=True)


async def read_text(url: str) -> str:
    """Connect, sync, and return the document's "text" root as a fresh client sees it."""
    client = await YClient(url).connect()
    try:
        return str(client.text)
    finally:
        await client.close()


def _state_vector(encoded: bytes) -> dict[int, int]:
    """client id -> clock, from lib0's encoding (read here, not with collab's codec)."""
    position = 0

    def varuint() -> int:
        nonlocal position
        value = shift = 0
        while True:
            byte = encoded[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    return {varuint(): varuint() for _ in range(varuint())}


def text_edits(*pieces: str) -> list[bytes]:
    """The updates an editor sends when it appends `pieces` to Y.Text "text", one each."""
    doc: Doc = Doc()
    updates: list[bytes] = []
    doc.observe(lambda event: updates.append(event.update))
    text = doc.get("text", type=Text)
    for piece in pieces:
        text.insert(len(text), piece)
    return updates
