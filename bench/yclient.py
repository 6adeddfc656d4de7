"""A minimal Yjs client for the benchmarks: `websockets` + pycrdt's sync helpers.

It speaks y-protocols exactly like the servers' own clients: on connect it sends
sync step 1, answers the server's step 1 with step 2, applies step 2 and every
update it receives. It ignores awareness (no benchmark sets presence). Flow
control is off on the receive side (`max_queue=None`) so that a client which
is busy sending never makes a server see a slow consumer: the benchmark should
measure the server, not this client's buffer sizes. Compression is off too, so
every server does the same work per frame (Node's `ws` server does not
negotiate permessage-deflate, uvicorn would if asked).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import websockets
from editing_trace import TEXT_ROOT
from pycrdt import Doc, Text, YSyncMessageType, create_sync_message, handle_sync_message
from websockets.asyncio.client import ClientConnection

_SYNC = 0


class BenchClient:
    """One connection to one document.

    - `apply`: apply received updates to `doc` (otherwise only count them; the
      writer does not need its own echoes applied).
    - `record`: keep `(arrival perf_counter, frame)` of every update frame, to be
      decoded after the measurement (keeps the receive path cheap).
    """

    def __init__(
        self, url: str, *, apply: bool = True, record: bool = False, compression: str | None = None
    ) -> None:
        self.url = url
        self.apply = apply
        self.record = record
        self.compression = compression
        self.doc: Doc[Text] = Doc()
        self.updates_received = 0
        self.bytes_received = 0
        self.records: list[tuple[float, bytes]] = []
        self.synced = asyncio.Event()
        self.closed = asyncio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self.error: BaseException | None = None
        self._target = 0
        self._reached = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def text(self) -> str:
        return str(self.doc.get(TEXT_ROOT, type=Text))

    async def connect(self, *, timeout_s: float = 10.0) -> None:
        """Open the socket, start the receive loop and send sync step 1 (no wait for step 2)."""
        self._ws = await websockets.connect(
            self.url,
            compression=self.compression,
            max_size=None,
            max_queue=None,
            ping_interval=None,
            open_timeout=timeout_s,
            close_timeout=2,
        )
        self._task = asyncio.create_task(self._receive(), name=f"receive {self.url}")
        await self._ws.send(create_sync_message(self.doc))

    async def sync(self, *, timeout_s: float = 10.0) -> None:
        """Connect and wait until the server's step 2 has been applied."""
        await self.connect(timeout_s=timeout_s)
        await self.wait_synced(timeout_s)

    async def wait_synced(self, timeout_s: float) -> None:
        synced = asyncio.ensure_future(self.synced.wait())
        closed = asyncio.ensure_future(self.closed.wait())
        _, pending = await asyncio.wait(
            {synced, closed}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        for task in pending:
            task.cancel()
        if not self.synced.is_set():
            raise ConnectionError(f"not synced after {timeout_s}s ({self.describe_close()})")

    async def wait_updates(self, count: int, timeout_s: float) -> bool:
        """Wait until `count` update frames arrived (True) or the socket closed / time ran out."""
        self._target = count
        if self.updates_received >= count:
            return True
        self._reached.clear()
        reached = asyncio.ensure_future(self._reached.wait())
        closed = asyncio.ensure_future(self.closed.wait())
        await asyncio.wait(
            {reached, closed}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
        for task in (reached, closed):
            task.cancel()
        return self.updates_received >= count

    async def send(self, frame: bytes) -> None:
        assert self._ws is not None
        await self._ws.send(frame)

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(), 5)
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._task, 5)

    def describe_close(self) -> str:
        if not self.closed.is_set():
            return "connection open"
        return f"closed by server: code {self.close_code} {self.close_reason!r}".strip()

    async def _receive(self) -> None:
        assert self._ws is not None
        ws = self._ws
        try:
            while True:
                frame = await ws.recv()
                if isinstance(frame, str) or not frame or frame[0] != _SYNC:
                    continue  # awareness, keep-alives: not measured
                self.bytes_received += len(frame)
                kind = frame[1]
                if kind == YSyncMessageType.SYNC_UPDATE:
                    if self.record:
                        self.records.append((time.perf_counter(), frame))
                    if self.apply:
                        handle_sync_message(frame[1:], self.doc)
                    self.updates_received += 1
                    if self.updates_received >= self._target > 0:
                        self._reached.set()
                    continue
                reply = handle_sync_message(frame[1:], self.doc)
                if kind == YSyncMessageType.SYNC_STEP2:
                    self.synced.set()
                if reply is not None:
                    await ws.send(reply)
        except websockets.ConnectionClosed as exc:
            received = exc.rcvd
            self.close_code = received.code if received is not None else None
            self.close_reason = received.reason if received is not None else ""
        except Exception as exc:  # reported by the workload, never swallowed silently
            self.error = exc
        finally:
            self.closed.set()
