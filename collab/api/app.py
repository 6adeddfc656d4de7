"""The ASGI application: WebSocket endpoint, REST API, the browser editor (web_client).

The only module that imports FastAPI/Starlette. Everything is built in
`create_app(settings)`; there is no module-level state.

Connection discipline for /ws/{document}: accept -> validate the name -> join
the room -> one receive loop (in the endpoint's task) and one writer task per
connection -> whichever ends first ends the connection -> leave the room and
close in `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any, Literal

from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.types import Send
from starlette.websockets import WebSocketDisconnect

from collab import __version__
from collab.api.access import (
    ADMIN_ACCESS,
    READ_ACCESS,
    ReadGrant,
    access_of,
    admit_websocket,
    install_cors,
    log_refusal,
    refuse_request,
)
from collab.api.sockets import SERVER_SEND, SocketRoute
from collab.api.versions import (
    AUTH_ERRORS,
    NOT_FOUND,
    DocumentName,
    runtime_of,
    timestamp,
)
from collab.api.versions import router as versions_router
from collab.api.web_client import add_web_client
from collab.auth.policy import AuthError, AuthFailure
from collab.auth.tokens import build_access_policy
from collab.config import Settings
from collab.content import render_content
from collab.errors import (
    CloseCode,
    DocumentNotFound,
    MessageTooBig,
    ReadOnlyEdit,
    Refusal,
    UnsupportedData,
)
from collab.history.versions import SnapshotNotFound
from collab.logs import redact_url
from collab.metrics import CONTENT_TYPE_LATEST
from collab.protocol.codec import decode_message, encode_permission_denied
from collab.protocol.names import DOCUMENT_NAME_RULE, is_valid_document_name
from collab.rooms.peer import Peer, PeerLimits, PeerState
from collab.rooms.room import Room
from collab.rooms.send_gate import BigSendGate
from collab.runtime import Runtime, open_runtime
from collab.storage.store import DocumentInfo

logger = logging.getLogger(__name__)

_MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 5.5: a control frame payload is at most 125 bytes


class WebSocketTransport:
    """Adapts Starlette's WebSocket to the `Transport` a `Peer` needs.

    Data frames go straight to the server's own `send` (kept in the scope by
    `SocketRoute`), which raises OSError once the client is gone: Starlette's
    `send_bytes` adds a state check and a coroutine layer per frame, and relaying
    an update to N peers is N frames."""

    def __init__(self, websocket: WebSocket) -> None:
        self._websocket = websocket
        self._send: Send = websocket.scope.get(SERVER_SEND) or websocket.send

    async def send_bytes(self, data: bytes) -> None:
        await self._send({"type": "websocket.send", "bytes": data})

    async def close(self, code: int, reason: str) -> None:
        encoded = reason.encode()[:_MAX_CLOSE_REASON_BYTES]
        await self._websocket.close(code, encoded.decode(errors="ignore"))


# -- response models (they make the OpenAPI schema accurate) ----------------


class Health(BaseModel):
    status: str
    version: str
    database: str


class PresentUserOut(BaseModel):
    name: str
    color: str = Field(description="CSS colour the person's editor shows them in ('' if none)")


class DocumentSummary(BaseModel):
    name: str
    created_at: datetime | None = Field(description="None for a live document not yet stored")
    updated_at: datetime | None
    size_bytes: int = Field(description="Latest snapshot plus the update log after it")
    live_connections: int
    present: list[PresentUserOut] = Field(
        description="Who is in it now: the awareness states' `user` {name, color} "
        "(the y-codemirror convention), one per distinct name and colour"
    )


class AccessOut(BaseModel):
    auth_required: bool = Field(description="False: the server is open to anyone")
    role: Literal["read", "write", "admin"]
    documents: list[str] = Field(description="Names, PREFIX* patterns, or * for all")
    subject: str | None
    expires_at: datetime | None


class DocumentContent(BaseModel):
    name: str
    content: dict[str, Any] = Field(
        description=(
            "Each root by inferred type: Y.Map -> object, Y.Text -> string, "
            "Y.Array -> list, nested types recursively; an empty root -> ''."
        )
    )


def create_app(settings: Settings) -> FastAPI:
    access = build_access_policy(settings)  # AuthConfigError: the server must not start

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_runtime(settings, is_server=True) as runtime:
            app.state.runtime = runtime
            app.state.peer_limits = PeerLimits(
                max_queue_messages=settings.send_queue_messages,
                max_queue_bytes=settings.send_queue_bytes,
                keepalive_interval_s=settings.keepalive_interval_s,
                close_timeout_s=settings.close_timeout_s,
                rate_per_s=settings.rate_limit_per_s,
                rate_burst=settings.rate_limit_burst,
            )
            # One for the whole server: it bounds the copies of big messages in flight.
            app.state.send_gate = BigSendGate()
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
    app.add_exception_handler(AuthError, refuse_request)

    runtime = runtime_of

    @app.exception_handler(DocumentNotFound)
    async def document_not_found(_request: Request, exc: DocumentNotFound) -> JSONResponse:
        return JSONResponse({"detail": f"document {exc.args[0]!r} not found"}, status_code=404)

    @app.exception_handler(SnapshotNotFound)
    async def snapshot_not_found(_request: Request, exc: SnapshotNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    app.include_router(versions_router)

    @app.get(
        "/healthz",
        response_model=Health,
        responses={503: {"model": Health, "description": "Writes are not being committed"}},
        tags=["ops"],
    )
    async def healthz(request: Request) -> Health | JSONResponse:
        svc = runtime(request)
        await svc.store.ping()
        if not svc.writer.is_running:
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
        body = runtime(request).metrics.exposition()
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @app.get("/api/access", response_model=AccessOut, responses=AUTH_ERRORS, tags=["access"])
    async def get_access(grant: ReadGrant, request: Request) -> AccessOut:
        """What the request's token allows (an editor shows read-only mode from this)."""
        return AccessOut(
            auth_required=not access_of(request).is_open,
            role=grant.role.value,
            documents=list(grant.documents),
            subject=grant.subject,
            expires_at=None if grant.expires_at is None else timestamp(grant.expires_at),
        )

    @app.get(
        "/api/documents",
        response_model=list[DocumentSummary],
        responses=AUTH_ERRORS,
        tags=["documents"],
    )
    async def list_documents(grant: ReadGrant, request: Request) -> list[DocumentSummary]:
        """The documents the token covers (all of them on an open server)."""
        registry = runtime(request).registry

        def summary(name: str, info: DocumentInfo | None) -> DocumentSummary:
            return DocumentSummary(
                name=name,
                created_at=timestamp(info.created_at) if info else None,
                updated_at=timestamp(info.updated_at) if info else None,
                size_bytes=info.size_bytes if info else 0,
                live_connections=registry.live_connections(name),
                present=[
                    PresentUserOut(name=user.name, color=user.color)
                    for user in registry.present_users(name)
                ],
            )

        stored = {info.name: info for info in await runtime(request).store.list_documents()}
        live = {name for name, room in registry.rooms.items() if room.peers}
        names = sorted(name for name in stored.keys() | live if grant.covers(name))
        return [summary(name, stored.get(name)) for name in names]

    @app.get(
        "/api/documents/{name}",
        response_model=DocumentContent,
        responses=NOT_FOUND | AUTH_ERRORS,
        tags=["documents"],
        dependencies=[READ_ACCESS],
    )
    async def get_document(name: DocumentName, request: Request) -> DocumentContent:
        state = await runtime(request).registry.read_state(name)
        if state is None:
            raise DocumentNotFound(name)  # one 404 shape: the handler above
        content = await asyncio.to_thread(render_content, state)
        return DocumentContent(name=name, content=content)

    @app.delete(
        "/api/documents/{name}",
        status_code=204,
        responses=NOT_FOUND | AUTH_ERRORS,
        tags=["documents"],
        dependencies=[ADMIN_ACCESS],
    )
    async def delete_document(name: DocumentName, request: Request) -> Response:
        if not await runtime(request).registry.delete(name):
            raise DocumentNotFound(name)  # one 404 shape: the handler above
        return Response(status_code=204)

    async def websocket_endpoint(websocket: WebSocket, name: str) -> None:
        # Accept first, so a refusal carries a close code and reason the client can read.
        await websocket.accept()
        if not is_valid_document_name(name):
            logger.warning("refused connection: bad document name %r", name[:200])
            await websocket.close(
                CloseCode.BAD_DOCUMENT_NAME,
                f"bad document name: use {DOCUMENT_NAME_RULE}",
            )
            return
        try:
            grant = admit_websocket(websocket)
        except AuthError as exc:
            log_refusal(websocket, exc, name)
            transport = WebSocketTransport(websocket)
            await transport.send_bytes(encode_permission_denied(exc.message))
            await transport.close(exc.close_code, exc.message)
            return
        await _serve_peer(
            websocket,
            name,
            websocket.app.state.runtime,
            websocket.app.state.peer_limits,
            websocket.app.state.send_gate,
            is_read_only=grant.is_read_only,
        )

    # Every name after the prefix, "/" included, reaches the validator and gets a
    # close code, not a bare handshake refusal. Not `@app.websocket`: see api_sockets.
    app.add_middleware(SocketRoute, prefix="/ws/", endpoint=websocket_endpoint)
    add_web_client(app, settings.web_dir / "dist")
    return app


async def _serve_peer(
    websocket: WebSocket,
    name: str,
    svc: Runtime,
    limits: PeerLimits,
    gate: BigSendGate,
    *,
    is_read_only: bool,
) -> None:
    peer = Peer(
        WebSocketTransport(websocket),
        name,
        limits,
        svc.metrics,
        is_read_only=is_read_only,
        gate=gate,
    )
    svc.metrics.connections_opened.inc()
    try:
        room = await svc.registry.join(name, peer)
    except Refusal as exc:
        logger.warning("doc=%s peer=%d refused (%d): %s", name, peer.id, exc.close_code, exc)
        peer.close(exc.close_code, exc.reason)
        await _finish(peer, svc)
        return
    except Exception:  # task boundary: this client is told; the others are untouched
        logger.exception("doc=%s peer=%d could not join", name, peer.id)
        peer.close(CloseCode.INTERNAL_ERROR, "could not load the document")
        await _finish(peer, svc)
        return
    logger.info(
        "doc=%s peer=%d connected%s (%d in room)",
        name,
        peer.id,
        " read-only" if is_read_only else "",
        len(room.peers),
    )
    writer = asyncio.create_task(peer.run_writer(), name=f"peer {peer.id} writer")
    try:
        await _receive_until_writer_ends(websocket, peer, room, svc, writer)
    except (WebSocketDisconnect, OSError):
        peer.state = PeerState.CLOSED  # the socket went away under us
    except Exception:  # task boundary: this client is closed; the others are untouched
        logger.exception("doc=%s peer=%d receive loop failed", name, peer.id)
        peer.close(CloseCode.INTERNAL_ERROR, "internal error")
    finally:
        svc.registry.leave(room, peer)
        writer.cancel()
        (result,) = await asyncio.gather(writer, return_exceptions=True)
        if isinstance(result, WebSocketDisconnect | OSError):
            peer.state = PeerState.CLOSED  # the socket went away under a send
        elif isinstance(result, Exception):
            logger.error(
                "doc=%s peer=%d %s failed", name, peer.id, writer.get_name(), exc_info=result
            )
            peer.close(CloseCode.INTERNAL_ERROR, "internal error")
        await _finish(peer, svc)
        logger.info(
            "doc=%s peer=%d disconnected (code %s%s)",
            name,
            peer.id,
            int(peer.close_code) if peer.close_code else "-",
            f", {peer.close_reason}" if peer.close_reason else "",
        )


async def _receive_until_writer_ends(
    websocket: WebSocket, peer: Peer, room: Room, svc: Runtime, writer: asyncio.Task[None]
) -> None:
    """Run the receive loop in the endpoint's own task until it or `writer` ends.

    Not a task of its own: an idle connection then costs two tasks (this one,
    which uvicorn runs anyway, and the writer), not three plus an `asyncio.wait`.
    Whichever ends first still ends the connection: when the writer ends first
    (the peer was closed, or a send failed) it moves the read's deadline to now,
    which cancels the pending `receive()`; the caller then cleans up.
    """
    is_reading = True

    def end_read(_writer: asyncio.Task[None]) -> None:
        if is_reading:  # the callback can run after the block below has exited
            read_deadline.reschedule(0)  # in the past: expires at once

    try:
        async with asyncio.timeout(None) as read_deadline:
            writer.add_done_callback(end_read)
            await _receive_loop(websocket, peer, room, svc)
    except TimeoutError:
        if not read_deadline.expired():
            raise  # not ours: a failure of the loop itself
    finally:
        is_reading = False
        writer.remove_done_callback(end_read)


async def _finish(peer: Peer, svc: Runtime) -> None:
    await peer.finish()
    svc.metrics.closed(peer.close_code)


async def _receive_loop(websocket: WebSocket, peer: Peer, room: Room, svc: Runtime) -> None:
    """Read frames until the client leaves or breaks the protocol."""
    max_bytes = svc.settings.max_message_bytes
    writer = svc.writer
    count_received = svc.metrics.received.count
    try:
        while peer.is_open:
            event = await websocket.receive()
            if event["type"] == "websocket.disconnect":
                # The client is gone: no close frame to send; keep its code for the log.
                peer.state = PeerState.CLOSED
                peer.close_code = peer.close_code or event.get("code")
                return
            peer.note_received()
            data = event.get("bytes")
            if data is None:
                raise UnsupportedData("text frames are not part of the Yjs protocol; send binary")
            count_received(data)
            if len(data) > max_bytes:
                raise MessageTooBig(f"message of {len(data)} bytes exceeds {max_bytes}")
            if room.handle(peer, decode_message(data)) and writer.pending_ops:
                await writer.wait_for_capacity()
    except Refusal as exc:
        logger.warning(
            "doc=%s peer=%d refused, closing with %d: %s",
            peer.document,
            peer.id,
            exc.close_code,
            exc.reason,
        )
        if isinstance(exc, ReadOnlyEdit):
            svc.metrics.auth_failed(AuthFailure.READ_ONLY_EDIT)
        peer.close(exc.close_code, exc.reason)
