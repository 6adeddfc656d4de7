"""The Python peer: pycrdt-websocket's WebsocketServer as an ASGI app on uvicorn.

Run by bench/run.py with bench/.venv's Python:

    python bench/pycrdt_server.py --port P [--sqlite PATH]

Without `--sqlite` documents live in memory only (and, as in pycrdt-websocket's
default, a room is dropped when its last client leaves). With `--sqlite` each
room gets a `SQLiteYStore` on PATH: a room loads the stored updates when it is
created, and pycrdt-websocket writes every update to the store in the
background after relaying it. uvicorn uses the same WebSocket implementation
("websockets-sansio") and frame limit as collab, so the transports match.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from pycrdt.store import SQLiteYStore, YDocNotFound
from pycrdt.websocket import ASGIServer, WebsocketServer, YRoom, exception_logger

logger = logging.getLogger("pycrdt_server")


class StoredWebsocketServer(WebsocketServer):
    """A WebsocketServer whose rooms are backed by one SQLite file."""

    def __init__(self, db_path: str) -> None:
        super().__init__(exception_handler=exception_logger, log=logger)
        self._store_class = type("BenchSQLiteYStore", (SQLiteYStore,), {"db_path": db_path})
        self._room_lock = asyncio.Lock()

    async def get_room(self, name: str) -> YRoom:
        async with self._room_lock:  # concurrent first joins must share one room
            if name not in self.rooms:
                assert self._task_group is not None
                ystore = self._store_class(path=name, log=logger)
                await self._task_group.start(ystore.start)
                room = YRoom(ystore=ystore, exception_handler=exception_logger, log=logger)
                try:
                    await ystore.apply_updates(room.ydoc)
                except YDocNotFound:
                    pass
                self.rooms[name] = room
            room = self.rooms[name]
            # Inside the lock too: pycrdt-websocket's own get_room/start_room let two
            # concurrent first joins both call room.start(), and the second fails
            # ("already running": the client is closed with 1011).
            await self.start_room(room)
        return room

    async def delete_room(self, *, name: str | None = None, room: YRoom | None = None) -> None:
        target = room if room is not None else self.rooms.get(name or "")
        await super().delete_room(name=name, room=room)
        if target is not None and target.ystore is not None:
            await target.ystore.stop()


def build_app(sqlite_path: str | None) -> Any:
    websocket_server = (
        StoredWebsocketServer(sqlite_path)
        if sqlite_path
        else WebsocketServer(exception_handler=exception_logger, log=logger)
    )
    asgi = ASGIServer(websocket_server)

    @asynccontextmanager
    async def lifespan() -> AsyncIterator[None]:
        async with websocket_server:
            yield

    class App:
        """ASGI: lifespan runs the WebsocketServer; WebSockets go to pycrdt-websocket."""

        async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "lifespan":
                async with lifespan():
                    while True:
                        message = await receive()
                        if message["type"] == "lifespan.startup":
                            await send({"type": "lifespan.startup.complete"})
                        elif message["type"] == "lifespan.shutdown":
                            await send({"type": "lifespan.shutdown.complete"})
                            return
            elif scope["type"] == "websocket":
                await asgi(scope, receive, send)

    return App()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--sqlite", metavar="PATH", help="store updates with SQLiteYStore")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s"
    )
    uvicorn.run(
        build_app(args.sqlite),
        host="127.0.0.1",
        port=args.port,
        ws="websockets-sansio",
        ws_max_size=32 * 1024 * 1024 + 1,
        log_level="info",
    )


if __name__ == "__main__":
    main()
