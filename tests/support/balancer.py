"""A plain TCP load balancer for the cluster tests: round robin, no sticky sessions.

What a deployment puts in front of several `collab serve` processes (nginx's
stream module, HAProxy in TCP mode): each new connection goes to the next
backend that accepts it, so a client that reconnects after its process died
lands on another one, and two clients of one document may sit on different
processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Sequence


class Balancer:
    def __init__(self, backends: Sequence[int]) -> None:
        self.backends = list(backends)
        self._next = itertools.count()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.port = 0

    def ws_url(self, document: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/{document}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        backend = await self._connect()
        if backend is None:
            writer.close()
            return
        up_reader, up_writer = backend
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(_pipe(source, sink))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for _ in range(len(self.backends)):
            port = self.backends[next(self._next) % len(self.backends)]
            with contextlib.suppress(OSError):
                return await asyncio.open_connection("127.0.0.1", port)
        return None


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except (OSError, asyncio.IncompleteReadError):
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.close()


@contextlib.asynccontextmanager
async def balancer(backends: Sequence[int]) -> AsyncIterator[Balancer]:
    lb = Balancer(backends)
    await lb.start()
    try:
        yield lb
    finally:
        await lb.close()
