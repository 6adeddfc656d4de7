"""The WebSocket route to /ws/{document} through ASGI, served ahead of FastAPI's stack.

`collab serve` does not use it: uvicorn hands its upgrades to collab.api.socket,
which serves /ws/ without ASGI. This route is for the app under another ASGI
server (or uvicorn with its own `ws` protocol, as the bench's transport variants
run it).

Why not `@app.websocket`: every layer a connection passes through stays
suspended for as long as the connection lives: FastAPI's exception and
AsyncExitStack middleware, the router, the route's wrapper with two more exit
stacks. For an HTTP request that is milliseconds; for a WebSocket it is hours,
and it was a large share of an idle connection's memory (bench/RESULTS.md,
idle connections). This pure ASGI middleware hands a
matching connection straight to the endpoint; everything else (HTTP, other
paths, lifespan) goes down the normal stack unchanged.

Installed with `app.add_middleware`, so FastAPI's outermost layers still wrap
it (its error middleware passes WebSockets through) and `scope["app"]` is set
as usual. The document name is the rest of the path after the prefix, as
Starlette's `{name:path}` convertor gives it, and goes in
`scope["path_params"]` as a route would put it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

SocketEndpoint = Callable[[WebSocket, str], Awaitable[None]]
# Where the server's own ASGI `send` of a connection is kept in its scope, for the
# hot path (app.WebSocketTransport) to write data frames without Starlette's layer.
SERVER_SEND = "collab.server_send"


class SocketRoute:
    """ASGI middleware: WebSockets to `prefix` + name go to `endpoint(websocket, name)`."""

    def __init__(self, app: ASGIApp, *, prefix: str, endpoint: SocketEndpoint) -> None:
        self.app = app
        self._prefix = prefix
        self._endpoint = endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path = _route_path(scope)
            if path.startswith(self._prefix):
                name = path[len(self._prefix) :]
                scope["path_params"] = {"name": name}
                scope[SERVER_SEND] = send
                await self._endpoint(WebSocket(scope, receive, send), name)
                return
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The path below the application's mount point, as Starlette's router sees it."""
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "")
    if root_path and path.startswith(root_path + "/"):
        return path[len(root_path) :]
    return path
