"""/ws/{document} without ASGI: one asyncio protocol per connection, on
python-websockets' sans-I/O `ServerProtocol` (the framing, the handshake,
permessage-deflate; nothing here parses or builds a frame by hand).

Why: under ASGI every connection held a scope dict, a receive queue, uvicorn's
protocol state and a task suspended in the app for its whole life (most of the
27 kB an idle connection cost, bench/RESULTS.md). Here a connection is this
object, websockets' parser, its `Peer` and the peer's sender task:

- **in**: `data_received` feeds the parser; each complete message goes straight
  to `ConnectionEdge.take` (size check, decode, `Room.handle`), in this call.
- **out**: the peer's sender awaits `send_bytes`, which frames the message and
  `transport.write`s it; it waits only while the transport has paused writing
  (its buffer is over the high-water mark).
- **backpressure**: when `take` says wait (the writer's backlog is full, or the
  connection is over its rate), reading is paused (`transport.pause_reading`):
  TCP flow control stops the client. Messages already parsed from the last read
  wait in `_backlog` and are taken, in order, when reading resumes.

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
from collections import deque
from typing import cast

from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State
from websockets.server import ServerProtocol

from collab.api.assembly import (
    DeferredInflate,
    DeflatedFrame,
    MessageAssembly,
    OfferedExtensions,
)
from collab.api.connection import (
    TEXT_FRAME_REASON,
    WAIT_FOR_STORAGE,
    ConnectionEdge,
)
from collab.api.forwarded import TrustedProxies
from collab.api.handshake import parsed_request, printed_request
from collab.api.socket_admission import Refused, Target, admit_connection, check_upgrade
from collab.api.socket_liveness import Pings
from collab.errors import CloseCode, Refusal, UnfinishedMessage, UnsupportedData
from collab.rooms.peer import Peer, PeerState
from collab.rooms.room import Room

logger = logging.getLogger(__name__)

_MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 5.5: a control frame payload is at most 125 bytes
_GONE_CODE = 1006  # RFC 6455 7.4.1: the socket was lost without a close frame


class SocketConnection(asyncio.Protocol):
    """One WebSocket connection to /ws/{document}; satisfies the peer's `Transport`.

    `edge` is None before the application has started (refused 503)."""

    __slots__ = (
        "_assembly",
        "_assembly_deadline",
        "_backlog",
        "_client",
        "_close_timer",
        "_conn",
        "_edge",
        "_inflater",
        "_is_lost",
        "_is_read_paused",
        "_is_write_paused",
        "_last_read_at",
        "_loop",
        "_max_size",
        "_offered_extensions",
        "_peer",
        "_pings",
        "_proxies",
        "_room",
        "_sender",
        "_task",
        "_transport",
        "_wait",
        "_writable",
    )

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
        self._edge = edge
        self._proxies = proxies  # who may name the client (X-Forwarded-For)
        self._offered_extensions = extensions
        self._max_size = max_message_bytes * 2 + 1
        self._conn = self._new_protocol(State.OPEN if is_request_parsed else State.CONNECTING)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._client = "-"
        self._peer: Peer | None = None
        self._room: Room | None = None
        self._task: asyncio.Task[None] | None = None  # joining, or sending the close frame
        self._sender: asyncio.Task[None] | None = None  # the peer's, once joined
        # Messages parsed while reading was paused, and what reading waits for.
        self._backlog: deque[Frame] | None = None
        self._is_read_paused = False
        self._wait: asyncio.TimerHandle | asyncio.Task[None] | None = None
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused
        self._is_write_paused = False
        self._assembly: MessageAssembly | None = None  # a message in frames, so far
        self._assembly_deadline: asyncio.TimerHandle | None = None
        self._inflater: DeferredInflate | None = None  # if permessage-deflate was negotiated
        self._pings: Pings | None = None  # once the connection is upgraded
        self._last_read_at = 0.0
        self._close_timer: asyncio.TimerHandle | None = None
        self._is_lost = False

    def _new_protocol(self, state: State) -> ServerProtocol:
        # OPEN: the handshake request is taken parsed (`upgrade`), so websockets'
        # parser starts at the frames. The limit is above the message limit, so
        # an oversized message reaches the edge's check (4413 and a log line)
        # instead of the library's 1009.
        return ServerProtocol(
            extensions=self._offered_extensions, state=state, max_size=self._max_size, logger=logger
        )

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

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple) and len(peername) >= 2:
            self._client = f"{peername[0]}:{peername[1]}"

    def data_received(self, data: bytes) -> None:
        self._last_read_at = self._loop.time()
        conn = self._conn
        conn.receive_data(data)
        events = conn.events_received()
        if self._backlog is not None:
            self._backlog.extend(cast(list[Frame], events))
        else:
            for index, event in enumerate(events):
                if isinstance(event, Request):
                    self._handshake(event)
                else:
                    self._on_frame(cast(Frame, event))
                if self._is_read_paused:
                    self._backlog = deque(cast(list[Frame], events[index + 1 :]))
                    break
        self._write_out()  # pongs and close replies the parser queued
        if conn.parser_exc is not None:
            self._on_parser_error(conn.parser_exc)

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

    def pause_writing(self) -> None:
        self._is_write_paused = True

    def resume_writing(self) -> None:
        self._is_write_paused = False
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # the peer's Transport

    async def send_bytes(self, data: bytes) -> None:
        while self._is_write_paused and not self._is_lost:
            if self._writable is None or self._writable.done():
                self._writable = self._loop.create_future()
            await self._writable
        transport, edge = self._transport, self._edge
        if self._is_lost or transport is None or self._conn.state is not State.OPEN:
            raise ConnectionResetError("the client is gone")
        assert edge is not None  # a peer exists only once the edge admitted it
        # Framed once for every recipient of the same message (api.frames).
        transport.write(edge.frames.frame(data, self._inflater))

    def write_now(self, data: bytes) -> bool:
        """Write `data` now if the socket takes it without waiting (its buffer is
        under the high-water mark); False: nothing written, use `send_bytes`."""
        transport, edge = self._transport, self._edge
        if (
            self._is_write_paused
            or self._is_lost
            or transport is None
            or edge is None
            or self._conn.state is not State.OPEN
        ):
            return False
        transport.write(edge.frames.frame(data, self._inflater))
        return True

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
        elif self._transport is not None:
            # Taken parsed (`upgrade`): the parser is at the frames already and
            # keeps nothing of the request. Written as send_response would, less
            # its "connection open" line (the edge logs the connection once joined).
            self._transport.write(response.serialize())
        settings = edge.runtime.settings
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

    # messages in

    def _on_frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.BINARY or opcode is Opcode.TEXT:
            is_deflated = isinstance(frame, DeflatedFrame)
            if frame.fin and not is_deflated:
                # The common case: whole and plain; `take` bounds it by its kind.
                self._on_message(bytes(frame.data), opcode is Opcode.TEXT)
                return
            edge = self._edge
            if edge is None:
                return  # refused at the handshake
            self._assembly = MessageAssembly(
                edge.message_limits,
                edge.runtime.metrics,
                self._inflater if is_deflated else None,
                is_text=opcode is Opcode.TEXT,
            )
            self._add_frame(frame)
        elif opcode is Opcode.CONT:
            if self._assembly is not None:  # else dropped: refused, or the peer is closing
                self._add_frame(frame)
        elif opcode is Opcode.PONG:
            if self._pings is not None:
                self._pings.on_pong(bytes(frame.data))
        elif opcode is Opcode.CLOSE:
            self._on_close()
        # PING: the parser has queued the pong already.

    def _add_frame(self, frame: Frame) -> None:
        """Add a frame to the message under way: refused past its kind's limit
        (before inflating further), and bounded in time once it spans frames."""
        assembly = self._assembly
        assert assembly is not None
        try:
            message = assembly.add(bytes(frame.data), is_final=frame.fin)
        except Refusal as exc:
            self._end_assembly()
            if self._edge is not None and self._peer is not None and self._peer.is_open:
                self._edge.refuse(self._peer, exc)
            return
        if message is not None:
            self._end_assembly()
            self._on_message(message, assembly.is_text)
        elif self._assembly_deadline is None and self._edge is not None:
            timeout_s = self._edge.runtime.settings.request_timeout_s
            if timeout_s:
                self._assembly_deadline = self._loop.call_later(timeout_s, self._assembly_late)

    def _end_assembly(self) -> None:
        self._assembly = None
        if self._assembly_deadline is not None:
            self._assembly_deadline.cancel()
            self._assembly_deadline = None

    def _assembly_late(self) -> None:
        """A message begun in frames and not finished in time: its parts are
        memory held for nothing; close."""
        self._assembly_deadline = None
        self._assembly = None
        peer, edge = self._peer, self._edge
        if peer is not None and edge is not None and peer.is_open:
            edge.runtime.metrics.refused("message_timeout")
            timeout_s = edge.runtime.settings.request_timeout_s
            edge.refuse(peer, UnfinishedMessage(f"message not finished within {timeout_s:g} s"))

    def _on_message(self, data: bytes, is_text: bool) -> None:
        edge, peer, room = self._edge, self._peer, self._room
        if edge is None or peer is None or room is None or not peer.is_open:
            return  # refused or closing: what it still sends is dropped
        try:
            if is_text:
                peer.note_received()
                raise UnsupportedData(TEXT_FRAME_REASON)
            delay_s = edge.take(peer, room, data)
        except Refusal as exc:
            edge.refuse(peer, exc)
            return
        except Exception:  # the connection's boundary: this client is closed, not the others
            logger.exception("doc=%s peer=%d receive failed", peer.document, peer.id)
            peer.close(CloseCode.INTERNAL_ERROR, "internal error")
            return
        if delay_s == WAIT_FOR_STORAGE:
            waiter = self._loop.create_task(edge.runtime.writer.wait_for_capacity())
            waiter.add_done_callback(self._waited)
            self._pause_reading(waiter)
        elif delay_s:
            self._pause_reading(self._loop.call_later(delay_s, self._resume_reading))

    def _waited(self, waiter: asyncio.Task[None]) -> None:
        if not waiter.cancelled():
            self._resume_reading()

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

    # reading paused and resumed

    def _pause_reading(self, wait: asyncio.TimerHandle | asyncio.Task[None] | None) -> None:
        self._wait = wait
        if not self._is_read_paused and self._transport is not None:
            self._is_read_paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        """Take the messages parsed meanwhile, in order, until one says wait again."""
        self._wait = None
        self._is_read_paused = False
        backlog = self._backlog
        while backlog:
            self._on_frame(backlog.popleft())
            if self._is_read_paused:
                return
        self._backlog = None
        transport = self._transport
        if transport is not None and not self._is_lost and not transport.is_closing():
            transport.resume_reading()

    # the pings' PingTarget (collab.api.socket_liveness)

    def send_ping(self, payload: bytes) -> bool:
        if self._conn.state is not State.OPEN or self._is_lost:
            return False
        self._conn.send_ping(payload)
        self._write_out()
        return True

    def is_alive_since(self, sent_at: float) -> bool:
        return self._is_read_paused or self._last_read_at > sent_at

    def ping_timed_out(self, timeout_s: float) -> None:
        if self._conn.state is not State.OPEN:
            return
        logger.info("client=%s no pong within %g s: closing", self._client, timeout_s)
        self._gone(CloseCode.INTERNAL_ERROR)
        self._conn.fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        self._write_out()
        self._close_transport()

    # writing and closing

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

    def _write_out(self) -> None:
        data = self._conn.data_to_send()
        if data and self._transport is not None and not self._is_lost:
            self._transport.write(b"".join(data))

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()
