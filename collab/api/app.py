"""The ASGI application: built in `create_app(settings)`, no module-level state.

Puts the API layer together: the runtime opened for the app's lifespan, the
HTTP edge in front of everything (collab.api.http_edge: the Host allow-list and
the body limit), the WebSocket route to /ws/{document} (collab.api.connection,
served ahead of FastAPI's stack by collab.api.sockets), the REST routers
(documents, versions, tokens, editing, transfer), the change feed and the webhook
admin (events), the ops endpoints (/healthz, /metrics), the browser editor
(web_client) and the security headers on every HTTP response (security_headers).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.websockets import WebSocket

from collab import __version__
from collab.api.access import install_cors, refuse_request
from collab.api.activity import router as activity_router
from collab.api.connection import ConnectionEdge
from collab.api.documents import router as documents_router
from collab.api.edit_edge import EditRateLimit
from collab.api.editing import router as editing_router
from collab.api.events import router as events_router
from collab.api.http_edge import AllowedHosts, BodyLimit, HostAllowList
from collab.api.rest import runtime_of
from collab.api.security_headers import SecurityHeaders
from collab.api.sockets import SocketRoute
from collab.api.tokens import router as tokens_router
from collab.api.transfer import router as transfer_router
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


def allowed_hosts_of(settings: Settings) -> AllowedHosts:
    """Besides localhost and IP addresses: `COLLAB_ALLOWED_HOSTS`, the public URL's
    host and `--host` (ValueError for an entry that is not a host name)."""
    wildcard = settings.host in ("0.0.0.0", "::", "")
    return AllowedHosts.of(
        [
            *settings.allowed_hosts.split(","),
            settings.public_url,
            "" if wildcard else settings.host,
        ]
    )


def refusal_counter(app: FastAPI) -> Callable[[str], None]:
    """Counts a refusal at the edge in collab_limit_refusals_total{limit} (once the
    runtime is up: before that, nothing is served)."""

    def count_refusal(limit: str) -> None:
        runtime = getattr(app.state, "runtime", None)
        if runtime is not None:
            runtime.metrics.refused(limit)

    return count_refusal


def create_app(settings: Settings) -> FastAPI:
    revocations = RevocationList()  # what the policy refuses; the runtime keeps it current
    access = build_access_policy(settings, revocations)  # AuthConfigError: must not start
    allowed_hosts = allowed_hosts_of(settings)  # ValueError: the same

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
                access=access,
                allowed_hosts=allowed_hosts,
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
    app.state.edit_rate = EditRateLimit(settings.edit_rate_per_s, settings.edit_rate_burst)
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
    app.include_router(activity_router)
    app.include_router(documents_router)
    app.include_router(tokens_router)
    app.include_router(editing_router)
    app.include_router(transfer_router)
    app.include_router(events_router)

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
    # Outermost (added last): nothing behind them sees a request they refuse.
    count_refusal = refusal_counter(app)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_request_body_bytes,
        timeout_s=settings.request_timeout_s,
        count_refusal=count_refusal,
    )
    app.add_middleware(HostAllowList, allowed=allowed_hosts, count_refusal=count_refusal)
    add_web_client(app, settings.web_dir / "dist", allow_remote_images=settings.allow_remote_images)
    return app
