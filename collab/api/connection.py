"""The connection lifecycle of /ws/{document}: from the handshake to the close frame.

Discipline: accept -> validate the name -> admit the token -> join the room ->
one receive loop (in the endpoint's own task) and one sender task per
connection -> whichever ends first ends the connection -> leave the room and
close in `finally`. Every refusal carries a documented close code
(collab.errors.CloseCode) and a log line with the document and peer id.

The peer's state is changed only through its own methods (`close`,
`mark_gone`, `finish`); this module decides when, the peer keeps the rules.

A token is not only checked at the handshake: while a connection lives, the
edge holds its grant. One timer per connection (`loop.call_at`, cancelled when
it ends; no polling) closes it with 4001 when the token expires (its `exp` plus
`COLLAB_AUTH_LEEWAY_S`, the moment a reconnect with it would be refused), and a
revocation closes the connections it covers with 4401 at once
(`close_revoked`, called by collab.cluster.revocations).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from starlette.types import Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from collab.api.access import admit_websocket, author_of, log_refusal
from collab.api.assembly import MessageLimits
from collab.api.frames import OutgoingFrames
from collab.api.http_edge import AllowedHosts
from collab.api.sockets import SERVER_SEND
from collab.auth.policy import AccessPolicy, AuthError, AuthFailure, Grant
from collab.auth.revocation import Revocation
from collab.errors import CloseCode, ReadOnlyEdit, Refusal, UnsupportedData
from collab.protocol.codec import SyncUpdate, decode_message, encode_permission_denied
from collab.protocol.names import DOCUMENT_NAME_RULE, is_valid_document_name
from collab.rooms.peer import Peer, PeerLimits, Transport
from collab.rooms.room import Room
from collab.rooms.send_gate import BigSendGate
from collab.runtime import Runtime

logger = logging.getLogger(__name__)

_MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 5.5: a control frame payload is at most 125 bytes
# `ConnectionEdge.take`'s answer when the next read waits for the writer's backlog.
WAIT_FOR_STORAGE = -1.0
BAD_NAME_REASON = f"bad document name: use {DOCUMENT_NAME_RULE}"
TEXT_FRAME_REASON = "text frames are not part of the Yjs protocol; send binary"


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


@dataclass(slots=True)
class HeldToken:
    """The grant an open connection was admitted with, and its expiry timer."""

    grant: Grant
    expiry: asyncio.TimerHandle


@dataclass
class ConnectionEdge:
    """What every connection of one server shares: the runtime, the per-peer
    limits, the server-wide send gate for big messages, the peer numbering the
    logs use, and the tokens open connections hold. Built once at start-up
    (`create_app`'s lifespan). Satisfies collab.cluster.revocations.ConnectionCloser."""

    runtime: Runtime
    limits: PeerLimits
    # Who may connect, and under which host names (collab.api.socket checks both
    # itself; the ASGI path has the middlewares and the app's state for them).
    access: AccessPolicy | None = None
    allowed_hosts: AllowedHosts | None = None
    # One for the whole server: it bounds the copies of big messages in flight.
    gate: BigSendGate = field(default_factory=BigSendGate)
    _peer_ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    # Connections admitted with a token (an open server's have none to watch).
    _tokens: dict[Peer, HeldToken] = field(default_factory=dict)
    # Relays framed (and compressed) once for all recipients (collab.api.socket's).
    frames: OutgoingFrames = field(default_factory=OutgoingFrames)
    # Each message kind's bound, checked before decoding (collab.api.assembly).
    message_limits: MessageLimits = field(init=False)

    def __post_init__(self) -> None:
        self.message_limits = MessageLimits.of(self.runtime.settings)

    async def serve(self, websocket: WebSocket, name: str) -> None:
        """Serve one connection to /ws/{name} through ASGI until it ends.

        `collab serve` does not come here: its connections are served by
        collab.api.socket without ASGI. This path is for the app under another
        ASGI server; both use the steps below (admission, join, `take`, leave)."""
        # Accept first, so a refusal carries a close code and reason the client can read.
        await websocket.accept()
        if not is_valid_document_name(name):
            log_bad_name(name)
            await websocket.close(CloseCode.BAD_DOCUMENT_NAME, BAD_NAME_REASON)
            return
        try:
            grant = admit_websocket(websocket)
        except AuthError as exc:
            log_refusal(websocket, exc, name)
            transport = WebSocketTransport(websocket)
            await transport.send_bytes(encode_permission_denied(exc.message))
            await transport.close(exc.close_code, exc.message)
            return
        peer = self.open_peer(WebSocketTransport(websocket), name, grant)
        try:
            await self._serve_peer(websocket, peer)
        finally:
            self.release(peer)

    def open_peer(
        self,
        transport: Transport,
        name: str,
        grant: Grant,
        write_now: Callable[[bytes], bool] | None = None,
    ) -> Peer:
        """The peer of a connection admitted with `grant`; `release` it when it ends.
        `write_now`: the transport's synchronous write, if it has one (Peer.send)."""
        peer = Peer(
            transport,
            name,
            self.limits,
            self.runtime.metrics,
            is_read_only=grant.is_read_only,
            gate=self.gate,
            peer_id=next(self._peer_ids),
            write_now=write_now,
            author=author_of(grant),
        )
        # Nothing awaited since admission: a revocation cannot fall in between.
        if grant.expires_at is not None:
            self._hold_token(peer, grant, grant.expires_at)
        return peer

    def release(self, peer: Peer) -> None:
        """Forget the token `peer` was admitted with (its expiry timer too)."""
        held = self._tokens.pop(peer, None)
        if held is not None:
            held.expiry.cancel()

    async def join(self, peer: Peer) -> Room | None:
        """Join `peer`'s room; None if refused (the peer is then closed with the code)."""
        runtime, name = self.runtime, peer.document
        runtime.metrics.connections_opened.inc()
        try:
            room = await runtime.registry.join(name, peer)
        except Refusal as exc:
            self._refuse_join(peer, exc)
            return None
        except Exception:  # task boundary: this client is told; the others are untouched
            logger.exception("doc=%s peer=%d could not join", name, peer.id)
            peer.close(CloseCode.INTERNAL_ERROR, "could not load the document")
            return None
        self._log_connected(peer, room)
        return room

    def join_loaded(self, peer: Peer) -> Room | None:
        """`join`, without awaiting, if `peer`'s document is loaded: the room, or
        None - refused (the peer is then closed, as by `join`), or not loaded
        (the peer is still open: `join` it)."""
        runtime, name = self.runtime, peer.document
        try:
            room = runtime.registry.join_loaded(name, peer)
        except Refusal as exc:
            runtime.metrics.connections_opened.inc()
            self._refuse_join(peer, exc)
            return None
        if room is not None:
            runtime.metrics.connections_opened.inc()
            self._log_connected(peer, room)
        return room

    def _refuse_join(self, peer: Peer, exc: Refusal) -> None:
        logger.warning(
            "doc=%s peer=%d refused (%d): %s", peer.document, peer.id, exc.close_code, exc
        )
        peer.close(exc.close_code, exc.reason)

    def _log_connected(self, peer: Peer, room: Room) -> None:
        logger.info(
            "doc=%s peer=%d connected%s (%d in room)",
            peer.document,
            peer.id,
            " read-only" if peer.is_read_only else "",
            len(room.peers),
        )

    def take(self, peer: Peer, room: Room, data: bytes) -> float:
        """Hand one binary message from `peer` to its room: the seconds to wait
        before reading the connection's next one (0.0: read on), or
        `WAIT_FOR_STORAGE`. A refusal raises `Refusal` (see `refuse`).

        Backpressure, not refusal, for a client that sends faster than it may:
        while the edge waits it reads nothing from the socket, and TCP flow
        control stops the client. An edit that changed the document waits for
        storage when the writer's backlog is full; every other message is charged
        to the connection's rate limit and waits for its next token.
        """
        peer.note_received()
        self.runtime.metrics.received.count(data)
        self.message_limits.check(data)
        return self._pace(peer, room.handle(peer, decode_message(data)), 1)

    def take_edits(self, peer: Peer, room: Room, messages: list[bytes]) -> float:
        """`take` for a run of sync updates (messages that begin 0, 2) read
        back to back from `peer`: each counted, bounded and decoded as `take`
        does, then applied together (`Room.handle_updates`: one Doc transaction,
        one delta to store and relay). A message refused here or by the room
        raises after those before it are applied, as one by one. The run is at
        most one read from the socket, so the writer's backlog overshoots its
        bound by at most that before reading waits."""
        peer.note_received()
        received, limits = self.runtime.metrics.received, self.message_limits
        updates: list[bytes] = []
        refusal: Refusal | None = None
        for data in messages:
            received.count(data)
            try:
                limits.check(data)
                message = decode_message(data)
            except Refusal as exc:
                refusal = exc
                break
            assert isinstance(message, SyncUpdate)  # what a message beginning 0, 2 decodes to
            updates.append(message.update)
        is_changed = room.handle_updates(peer, updates)
        if refusal is not None:
            raise refusal
        return self._pace(peer, is_changed, len(updates))

    def _pace(self, peer: Peer, is_changed: bool, messages: int) -> float:
        if is_changed:
            # An edit, stored and relayed: paced by storage alone.
            return 0.0 if self.runtime.writer.has_capacity else WAIT_FOR_STORAGE
        if delay_s := peer.rate_delay_s(messages):
            # Nothing stored paces these (awareness, step 1, a duplicate...).
            self.runtime.metrics.paced_reads.inc()
            return delay_s
        return 0.0

    def refuse(self, peer: Peer, exc: Refusal) -> None:
        """Close `peer` for a message its room or the edge refused; one log line."""
        logger.warning(
            "doc=%s peer=%d refused, closing with %d: %s",
            peer.document,
            peer.id,
            exc.close_code,
            exc.reason,
        )
        if isinstance(exc, ReadOnlyEdit):
            self.runtime.metrics.auth_failed(AuthFailure.READ_ONLY_EDIT)
        peer.close(exc.close_code, exc.reason)

    def log_disconnected(self, peer: Peer) -> None:
        logger.info(
            "doc=%s peer=%d disconnected (code %s%s)",
            peer.document,
            peer.id,
            int(peer.close_code) if peer.close_code else "-",
            f", {peer.close_reason}" if peer.close_reason else "",
        )

    def _hold_token(self, peer: Peer, grant: Grant, expires_at: float) -> None:
        # A reconnect with this token is refused from exp + leeway on (the
        # verifier's rule): close then, so the client's one reconnect is refused
        # 4401 unless it brought a fresh token.
        loop = asyncio.get_running_loop()
        expires_in_s = expires_at + self.runtime.settings.auth_leeway_s - time.time()
        expiry = loop.call_at(loop.time() + expires_in_s, self._expire, peer)
        self._tokens[peer] = HeldToken(grant, expiry)

    def _expire(self, peer: Peer) -> None:
        logger.info("doc=%s peer=%d token expired: closing", peer.document, peer.id)
        peer.close(CloseCode.TOKEN_EXPIRED, "token expired")

    def close_revoked(self, revocation: Revocation) -> int:
        """Close (4401) every open connection whose token `revocation` covers."""
        now = time.time()
        closing = [
            peer
            for peer, held in self._tokens.items()
            if peer.is_open and revocation.covers(held.grant, now)
        ]
        for peer in closing:
            logger.warning(
                "doc=%s peer=%d token revoked (%s %r): closing",
                peer.document,
                peer.id,
                revocation.kind,
                revocation.value,
            )
            self.runtime.metrics.auth_failed(AuthFailure.REVOKED)
            peer.close(CloseCode.UNAUTHORIZED, "token revoked")
        return len(closing)

    async def _serve_peer(self, websocket: WebSocket, peer: Peer) -> None:
        room = await self.join(peer)
        if room is None:
            await self.finish(peer)
            return
        name = peer.document
        sender = asyncio.create_task(peer.run_sender(), name=f"peer {peer.id} sender")
        try:
            await self._receive_until_sender_ends(websocket, peer, room, sender)
        except (WebSocketDisconnect, OSError):
            peer.mark_gone()  # the socket went away under us
        except Exception:  # task boundary: this client is closed; the others are untouched
            logger.exception("doc=%s peer=%d receive loop failed", name, peer.id)
            peer.close(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self.runtime.registry.leave(room, peer)
            sender.cancel()
            (result,) = await asyncio.gather(sender, return_exceptions=True)
            self.note_sender_end(peer, result)
            await self.finish(peer)
            self.log_disconnected(peer)

    def note_sender_end(self, peer: Peer, result: BaseException | None) -> None:
        """How `peer`'s sender ended: the socket gone, a failure, or asked to."""
        if isinstance(result, WebSocketDisconnect | OSError):
            peer.mark_gone()  # the socket went away under a send
        elif isinstance(result, Exception):
            logger.error("doc=%s peer=%d sender failed", peer.document, peer.id, exc_info=result)
            peer.close(CloseCode.INTERNAL_ERROR, "internal error")

    async def _receive_until_sender_ends(
        self, websocket: WebSocket, peer: Peer, room: Room, sender: asyncio.Task[None]
    ) -> None:
        """Run the receive loop in the endpoint's own task until it or `sender` ends.

        Not a task of its own: an idle connection then costs two tasks (this one,
        which uvicorn runs anyway, and the sender), not three plus an
        `asyncio.wait`. Whichever ends first still ends the connection: when the
        sender ends first (the peer was closed, or a send failed) it moves the
        read's deadline to now, which cancels the pending `receive()`; the caller
        then cleans up.
        """
        is_reading = True

        def end_read(_sender: asyncio.Task[None]) -> None:
            if is_reading:  # the callback can run after the block below has exited
                read_deadline.reschedule(0)  # in the past: expires at once

        try:
            async with asyncio.timeout(None) as read_deadline:
                sender.add_done_callback(end_read)
                await self._receive_loop(websocket, peer, room)
        except TimeoutError:
            if not read_deadline.expired():
                raise  # not ours: a failure of the loop itself
        finally:
            is_reading = False
            sender.remove_done_callback(end_read)

    async def finish(self, peer: Peer) -> None:
        """Send `peer`'s close frame (bounded wait) and count how it closed."""
        await peer.finish()
        self.runtime.metrics.closed(peer.close_code)

    async def _receive_loop(self, websocket: WebSocket, peer: Peer, room: Room) -> None:
        """Read frames until the client leaves or breaks the protocol; waits as
        `take` says between them (uvicorn reads nothing more from the socket
        until the next `receive()`)."""
        writer = self.runtime.writer
        try:
            while peer.is_open:
                event = await websocket.receive()
                if event["type"] == "websocket.disconnect":
                    # The client is gone: no close frame to send; keep its code for the log.
                    peer.mark_gone(event.get("code"))
                    return
                data = event.get("bytes")
                if data is None:
                    peer.note_received()
                    raise UnsupportedData(TEXT_FRAME_REASON)
                delay_s = self.take(peer, room, data)
                if delay_s == WAIT_FOR_STORAGE:
                    await writer.wait_for_capacity()
                elif delay_s:
                    await asyncio.sleep(delay_s)
        except Refusal as exc:
            self.refuse(peer, exc)


def log_bad_name(name: str) -> None:
    logger.warning("refused connection: bad document name %r", name[:200])
