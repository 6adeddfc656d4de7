"""A real webhook receiver for tests: a tiny HTTP/1.1 server on asyncio streams.

Records every request it gets (headers and body) and answers 204, or 500 while
`failures_left` is above zero (each failing request counts one down) or while
`is_down` is set; while `is_hanging` is set it answers nothing until `release()`
(`held` counts those requests). No framework: it reads exactly what a webhook
POST is.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from collab.webhooks.signing import is_valid


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)  # type: ignore[no-any-return]

    def is_signed_with(self, secret: str, now: float) -> bool:
        return is_valid(secret, self.headers["x-collab-signature"], self.body, now=now)


@dataclass
class Receiver:
    port: int = 0
    failures_left: int = 0
    is_down: bool = False
    is_hanging: bool = False
    held: int = 0
    requests: list[Received] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event)
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)

    def release(self) -> None:
        """Let the requests it holds (while `is_hanging`) be answered."""
        self._released.set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """The events it took (answered 2xx), in arrival order."""
        return [r.event for r in self.requests if r.status < 300]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request_line = await reader.readline()
            if not request_line:
                return
            headers: dict[str, str] = {}
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if self.is_hanging:
                self.held += 1
                await self._released.wait()
            failing = self.is_down or self.failures_left > 0
            if self.failures_left > 0:
                self.failures_left -= 1
            status = 500 if failing else 204
            self.requests.append(Received(headers, body, status))
            reason = "Internal Server Error" if failing else "No Content"
            writer.write(f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode())
            with contextlib.suppress(OSError):  # the sender may have gone (a timeout)
                await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self._handlers.discard(task)

    async def stop(self) -> None:
        """Answer what it holds and wait for every request in progress to end."""
        self.release()
        await asyncio.gather(*self._handlers, return_exceptions=True)


@contextlib.asynccontextmanager
async def webhook_receiver(port: int = 0) -> AsyncIterator[Receiver]:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", port)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        await receiver.stop()
        await server.wait_closed()
