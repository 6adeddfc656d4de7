"""/ws/{document} without ASGI: one asyncio protocol per connection, on
python-websockets' sans-I/O `ServerProtocol` (the framing, the handshake,
permessage-deflate; nothing here parses or builds a frame by hand).

Why: under ASGI every connection held a scope dict, a receive queue, uvicorn's
protocol state and a task suspended in the app for its whole life (most of the
27 kB an idle connection cost, bench/RESULTS.md). Here a connection is this
object, websockets' parser, its `Peer` and the peer's sender task.

`SocketConnection` is one class in three layers, each in its own module:
- **out** (collab.api.socket_output): the peer's sender awaits `send_bytes`,
  which frames the message and `transport.write`s it; it waits only while the
  transport has paused writing (its buffer is over the high-water mark).
- **in** (collab.api.socket_input): `data_received` feeds the parser; each
  complete message goes straight to `ConnectionEdge.take` (size check, decode,
  `Room.handle`), in this call. When `take` says wait, reading is paused
  (`transport.pause_reading`): TCP flow control stops the client.
- **the lifecycle** (here): the handshake, joining and leaving the room, and
  the end of the connection (close frames, a lost socket, missing pongs).

The lifecycle is the ASGI path's (collab.api.connection): handshake -> Host
allow-list (421) -> path (404) -> accept -> name (4404) -> token and Origin
(4401/4403) (these decisions: collab.api.socket_admission) -> join (at once if
the document is loaded, else a short task: the load) -> messages -> the sender
ends (the peer was closed or a send failed) or the socket is lost -> leave ->
close frame -> log.
The server adapter (collab.cli.edge_protocols) builds one per upgrade.
"""

from __future__ import annotations

import asyncio
import logging

from websockets.datastructures import Headers
from websockets.http11 import Request
from websockets.protocol import State

from collab.api.assembly import DeferredInflate, OfferedExtensions
from collab.api.connection import ConnectionEdge
from collab.api.forwarded import TrustedProxies
from collab.api.handshake import parsed_request, printed_request
from collab.api.socket_admission import Refused, Target, admit_connection, check_upgrade
from collab.api.socket_input import SocketInput
from collab.api.socket_liveness import Pings
from collab.errors import CloseCode
from collab.rooms.peer import Peer, PeerState
from collab.rooms.room import Room

logger = logging.getLogger(__name__)

_MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 5.5: a control frame payload is at most 125 bytes
_GONE_CODE = 1006  # RFC 6455 7.4.1: the socket was lost without a close frame


class SocketConnection(SocketInput):
    """One WebSocket connection to /ws/{document}; satisfies the peer's `Transport`.

    `edge` is None before the application has started (refused 503)."""

    __slots__ = ("_close_timer", "_proxies", "_sender", "_task")

    def __init__(
        self,
        edge: ConnectionEdge | None,
        extensions: OfferedExtensions,
        max_message_bytes: int,
        proxies: TrustedProxies | None = None,
        *,
        is_request_parsed: bool = False,
    ) -> None:
        """`is_request_parsed`: the handshake request comes parsed, through
        `upgrade`, not as bytes through `data_received`."""
        super().__init__(edge, extensions, max_message_bytes, is_request_parsed=is_request_parsed)
        self._proxies = proxies  # who may name the client (X-Forwarded-For)
        self._task: asyncio.Task[None] | None = None  # joining, or sending the close frame
        self._sender: asyncio.Task[None] | None = None  # the peer's, once joined
        self._close_timer: asyncio.TimerHandle | None = None

    def upgrade(self, method: str, target: bytes, raw_headers: list[tuple[bytes, bytes]]) -> None:
        """The handshake request, as the server's HTTP protocol parsed it
        (collab.api.handshake); one websockets' parser would refuse goes to that
        parser as bytes, as before, and is answered (or dropped) by it."""
        request = parsed_request(method, target, raw_headers)
        if request is None:
            self._conn = self._new_protocol(State.CONNECTING)
            self.data_received(printed_request(method, target, raw_headers))
            return
        self._last_read_at = self._loop.time()
        self._handshake(request)

    # asyncio.Protocol

    def eof_received(self) -> bool | None:
        self._conn.receive_eof()
        return None  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._is_lost = True
        if self._pings is not None:
            self._pings.stop()
        for timer in (self._close_timer, self._assembly_deadline):
            if timer is not None:
                timer.cancel()
        if self._wait is not None:
            self._wait.cancel()
            self._wait = None
        self._backlog = None
        self._assembly = None
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)  # a waiting send finds the socket gone
        received = self._conn.close_rcvd
        self._gone(received.code if received is not None else _GONE_CODE)

    async def close(self, code: int, reason: str) -> None:
        self._send_close(code, reason)

    def shutdown(self) -> None:
        """The server is stopping: 1012 (reconnect elsewhere) and close the socket."""
        if self._conn.state is State.OPEN:
            self._conn.send_close(CloseCode.SERVICE_RESTART)
            self._write_out()
        self._gone(CloseCode.SERVICE_RESTART)
        if self._transport is not None:
            self._transport.close()

    # the handshake

    def _handshake(self, request: Request) -> None:
        edge, conn, target = self._edge, self._conn, Target.of(request)
        if self._proxies is not None and "X-Forwarded-For" in request.headers:
            host = self._client.rsplit(":", 1)[0]
            forwarded = request.headers.get_all("X-Forwarded-For")
            self._client = self._proxies.client_of(host, forwarded) or self._client
        rejected = check_upgrade(edge, target, request.headers, self._client)
        if rejected is not None:
            self._reject(rejected.status, rejected.text)
            return
        assert edge is not None
        response = conn.accept(request)
        if response.status_code != 101:
            conn.send_response(response)
            self._write_out()
            self._close_transport()
            return
        headers = request.headers
        if conn.state is State.CONNECTING:
            conn.send_response(response)  # -> OPEN
            self._write_out()
            # websockets' parser keeps the request it parsed for the connection's
            # life (a local of its generator); its headers, 2 kB an idle
            # connection, are needed only for admission.
            headers = Headers(request.headers)
            request.headers.clear()
            self._open(edge, target, headers)
        elif self._transport is not None:
            # Taken parsed (`upgrade`): the parser is at the frames already and
            # keeps nothing of the request. Written as send_response would, less
            # its "connection open" line (the edge logs the connection once joined),
            # together with the room's first messages.
            self._cork(response.serialize())
            try:
                self._open(edge, target, headers)
            finally:
                self._uncork()

    def _open(self, edge: ConnectionEdge, target: Target, headers: Headers) -> None:
        """Accepted: the pings start, and the connection is admitted or refused."""
        conn, settings = self._conn, edge.runtime.settings
        self._pings = Pings(
            self._loop, self, settings.ws_ping_interval_s, settings.ws_ping_timeout_s
        )
        self._pings.start()
        for extension in conn.extensions:
            if isinstance(extension, DeferredInflate):
                self._inflater = extension
        admission = admit_connection(edge, target, headers, self._client)
        if isinstance(admission, Refused):
            if admission.message is not None:
                conn.send_binary(admission.message)
            self._send_close(admission.code, admission.reason)
            return
        peer = edge.open_peer(self, admission.name, admission.grant, self.write_now)
        self._peer = peer
        # A loaded document is joined at once; else the join (a load) is a task.
        room = edge.join_loaded(peer)
        if room is not None:
            self._start_sender(room)
        elif not peer.is_open:  # refused
            self._task = self._loop.create_task(self._end(edge, peer), name=f"peer {peer.id} close")
        else:
            self._pause_reading(None)  # until the room is joined
            self._task = self._loop.create_task(self._join(edge, peer), name=f"peer {peer.id} join")

    def _reject(self, status: int, text: str) -> None:
        self._conn.send_response(self._conn.reject(status, text))
        self._write_out()
        self._close_transport()

    # joining and leaving the room

    async def _join(self, edge: ConnectionEdge, peer: Peer) -> None:
        room = await edge.join(peer)
        if room is None or not peer.is_open:
            if room is not None:
                edge.runtime.registry.leave(room, peer)
            await self._end(edge, peer)
            return
        self._task = None  # done: nothing of it is needed
        self._start_sender(room)
        self._resume_reading()

    def _start_sender(self, room: Room) -> None:
        """Joined: the peer's sender runs until the connection ends."""
        peer = self._peer
        assert peer is not None
        self._room = room
        sender = self._loop.create_task(peer.run_sender(), name=f"peer {peer.id} sender")
        sender.add_done_callback(self._sender_ended)
        self._sender = sender

    def _sender_ended(self, sender: asyncio.Task[None]) -> None:
        """The peer was closed or a send failed: leave the room, send the close frame."""
        edge, peer, room = self._edge, self._peer, self._room
        assert edge is not None and peer is not None and room is not None
        result = None if sender.cancelled() else sender.exception()
        edge.note_sender_end(peer, result)
        edge.runtime.registry.leave(room, peer)
        self._task = self._loop.create_task(self._end(edge, peer), name=f"peer {peer.id} close")

    async def _end(self, edge: ConnectionEdge, peer: Peer) -> None:
        try:
            await edge.finish(peer)
        finally:
            edge.release(peer)
            edge.log_disconnected(peer)

    # the end of the connection

    def _on_close(self) -> None:
        """The client's close frame: the reply is queued (or it answers ours)."""
        received = self._conn.close_rcvd
        if self._peer is not None and self._peer.is_open:
            self._gone(received.code if received is not None else None)
        self._write_out()
        self._close_transport()

    def _on_parser_error(self, exc: Exception) -> None:
        sent = self._conn.close_sent
        logger.info(
            "client=%s %s: closing with %s",
            self._client,
            exc,
            sent.code if sent is not None else "-",
        )
        self._gone(sent.code if sent is not None else None)
        self._close_transport()

    def _gone(self, code: int | None) -> None:
        """No close frame can be sent any more: the peer is gone; its sender's
        end leaves the room."""
        if self._peer is not None and self._peer.state is not PeerState.CLOSED:
            self._peer.mark_gone(code)
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()

    # the pings' PingTarget (collab.api.socket_liveness), its end

    def ping_timed_out(self, timeout_s: float) -> None:
        if self._conn.state is not State.OPEN:
            return
        logger.info("client=%s no pong within %g s: closing", self._client, timeout_s)
        self._gone(CloseCode.INTERNAL_ERROR)
        self._conn.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        self._write_out()
        self._close_transport()

    # our close frame

    def _send_close(self, code: int, reason: str) -> None:
        """Our close frame; the socket closes on the client's reply or after the timeout."""
        if self._is_lost or self._conn.state is not State.OPEN:
            return
        encoded = reason.encode()[:_MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
        self._conn.send_close(code, encoded)
        self._write_out()
        timeout_s = self._edge.runtime.settings.close_timeout_s if self._edge else 10.0
        self._close_timer = self._loop.call_later(timeout_s, self._close_transport)
        self._end_assembly()
        if self._is_read_paused:
            # Read on, so the client's reply is seen; its messages are dropped.
            self._backlog = None
            if self._wait is not None:
                self._wait.cancel()
            self._resume_reading()
