"""The ASGI application: built in `create_app(settings)`, no module-level state.

Puts the API layer together: the runtime opened for the app's lifespan, the
WebSocket route to /ws/{document} (collab.api.connection, served ahead of
FastAPI's stack by collab.api.sockets), the REST routers (documents, versions),
the ops endpoints (/healthz, /metrics), the browser editor (web_client) and the
security headers on every HTTP response (security_headers).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.websockets import WebSocket

from collab import __version__
from collab.api.access import install_cors, refuse_request
from collab.api.connection import ConnectionEdge
from collab.api.documents import router as documents_router
from collab.api.rest import runtime_of
from collab.api.security_headers import SecurityHeaders
from collab.api.sockets import SocketRoute
from collab.api.tokens import router as tokens_router
from collab.api.versions import router as versions_router
from collab.api.web_client import add_web_client
from collab.auth.policy import AuthError
from collab.auth.revocation import RevocationList
from collab.auth.tokens import build_access_policy
from collab.config import Settings
from collab.errors import DocumentNotFound
from collab.history.versions import SnapshotNotFound
from collab.logs import redact_url
from collab.metrics import CONTENT_TYPE_LATEST
from collab.rooms.peer import PeerLimits
from collab.runtime import open_runtime

logger = logging.getLogger(__name__)


class Health(BaseModel):
    status: str
    version: str
    database: str


def create_app(settings: Settings) -> FastAPI:
    revocations = RevocationList()  # what the policy refuses; the runtime keeps it current
    access = build_access_policy(settings, revocations)  # AuthConfigError: must not start

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, is_server=True, revocation_list=revocations) as runtime:
            app.state.runtime = runtime
            app.state.connections = ConnectionEdge(
                runtime,
                PeerLimits(
                    max_queue_messages=settings.send_queue_messages,
                    max_queue_bytes=settings.send_queue_bytes,
                    keepalive_interval_s=settings.keepalive_interval_s,
                    close_timeout_s=settings.close_timeout_s,
                    rate_per_s=settings.rate_limit_per_s,
                    rate_burst=settings.rate_limit_burst,
                ),
            )
            runtime.revocations.attach_closer(app.state.connections)
            logger.info(
                "collab %s ready; database %s", __version__, redact_url(settings.database_url)
            )
            if access.verifier is None:
                logger.warning(
                    "running OPEN: no COLLAB_AUTH_SECRET or COLLAB_AUTH_PUBLIC_KEY, so anyone "
                    "who can reach %s can read, change and delete every document",
                    settings.advertised_url,
                )
            else:
                logger.info("tokens required (%s)", ", ".join(access.verifier.algorithms))
            yield
        logger.info("collab stopped; %d transactions committed", runtime.writer.commits)

    app = FastAPI(
        title="collab",
        version=__version__,
        summary="Yjs-compatible collaborative document server",
        lifespan=lifespan,
    )
    app.state.access = access
    install_cors(app, access)
    # Outside CORS (its preflight answers get them too), inside the socket route.
    app.add_middleware(SecurityHeaders)
    app.add_exception_handler(AuthError, refuse_request)

    @app.exception_handler(DocumentNotFound)
    async def document_not_found(_request: Request, exc: DocumentNotFound) -> JSONResponse:
        return JSONResponse({"detail": f"document {exc.args[0]!r} not found"}, status_code=404)

    @app.exception_handler(SnapshotNotFound)
    async def snapshot_not_found(_request: Request, exc: SnapshotNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    app.include_router(versions_router)
    app.include_router(documents_router)
    app.include_router(tokens_router)

    @app.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "Writes are not being committed"}},
        tags=["ops"],
    )
    async def healthz(request: Request) -> Health | JSONResponse:
        runtime = runtime_of(request)
        await runtime.store.ping()
        if not runtime.writer.is_running:
            # Nothing would be made durable (or relayed): not healthy, whatever SQL says.
            body = Health(status="failing", version=__version__, database="writer stopped")
            return JSONResponse(body.model_dump(), status_code=503)
        return Health(status="ok", version=__version__, database="ok")

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
        tags=["ops"],
    )
    async def metrics(request: Request) -> Response:
        """Prometheus exposition of this server's metrics."""
        body = runtime_of(request).metrics.exposition()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    def websocket_endpoint(websocket: WebSocket, name: str) -> Awaitable[None]:
        # Returns the edge's coroutine rather than awaiting it: one frame less
        # kept alive for the whole life of every connection.
        connections: ConnectionEdge = websocket.app.state.connections
        return connections.serve(websocket, name)

    # Every name after the prefix, "/" included, reaches the validator and gets a
    # close code, not a bare handshake refusal. Not `@app.websocket`: see api.sockets.
    app.add_middleware(SocketRoute, prefix="/ws/", endpoint=websocket_endpoint)
    add_web_client(app, settings.web_dir / "dist", allow_remote_images=settings.allow_remote_images)
    return app
