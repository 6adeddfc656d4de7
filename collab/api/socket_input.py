"""Bytes into one /ws/{document} connection: frames to messages to the room.

Owns `SocketInput`, the middle layer of collab.api.socket's connection:

- `data_received` feeds websockets' parser; each complete message goes straight
  to `ConnectionEdge.take` (size check, decode, `Room.handle`), in this call.
- A message in frames (or compressed) is assembled by `MessageAssembly`
  (collab.api.assembly): refused past its kind's limit before inflating
  further, and bounded in time once it spans frames (4008).
- **backpressure**: when `take` says wait (the writer's backlog is full, or the
  connection is over its rate), reading is paused (`transport.pause_reading`):
  TCP flow control stops the client. Messages already parsed from the last read
  wait in `_backlog` and are taken, in order, when reading resumes.

A layer of the connection's class rather than an object of its own: every
frame goes through `data_received` and `_on_frame`, and a base class adds no
call or attribute hop there. The handshake, the client's close frame and a
parse error are the connection's (collab.api.socket): this layer hands them on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import cast

from websockets.frames import Frame, Opcode
from websockets.http11 import Request

from collab.api.assembly import DeflatedFrame, MessageAssembly, OfferedExtensions
from collab.api.connection import TEXT_FRAME_REASON, WAIT_FOR_STORAGE, ConnectionEdge
from collab.api.socket_liveness import Pings
from collab.api.socket_output import SocketOutput
from collab.errors import CloseCode, Refusal, UnfinishedMessage, UnsupportedData
from collab.rooms.peer import Peer
from collab.rooms.room import Room

logger = logging.getLogger(__name__)

# How every edit's message begins: y-protocols' sync message (0), an update (2).
_SYNC_UPDATE_PREFIX = b"\x00\x02"


class SocketInput(SocketOutput):
    """The read side of one WebSocket connection (the rest: collab.api.socket)."""

    __slots__ = (
        "_assembly",
        "_assembly_deadline",
        "_backlog",
        "_is_read_paused",
        "_last_read_at",
        "_peer",
        "_pings",
        "_room",
        "_wait",
    )

    # the connection's (collab.api.socket)
    _handshake: Callable[[Request], None]
    _on_close: Callable[[], None]
    _on_parser_error: Callable[[Exception], None]

    def __init__(
        self,
        edge: ConnectionEdge | None,
        extensions: OfferedExtensions,
        max_message_bytes: int,
        *,
        is_request_parsed: bool = False,
    ) -> None:
        super().__init__(edge, extensions, max_message_bytes, is_request_parsed=is_request_parsed)
        self._peer: Peer | None = None
        self._room: Room | None = None
        # Messages parsed while reading was paused, and what reading waits for.
        self._backlog: list[Request | Frame] | None = None
        self._is_read_paused = False
        self._wait: asyncio.TimerHandle | asyncio.Task[None] | None = None
        self._assembly: MessageAssembly | None = None  # a message in frames, so far
        self._assembly_deadline: asyncio.TimerHandle | None = None
        self._pings: Pings | None = None  # once the connection is upgraded
        self._last_read_at = 0.0

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        self._last_read_at = self._loop.time()
        conn = self._conn
        conn.receive_data(data)
        events = cast(list[Request | Frame], conn.events_received())
        if self._backlog is not None:
            self._backlog.extend(events)
        else:
            self._take_events(events)
        self._write_out()  # pongs and close replies the parser queued
        if conn.parser_exc is not None:
            self._on_parser_error(conn.parser_exc)

    def _take_events(self, events: list[Request | Frame]) -> None:
        """Take parsed events in order until one says wait; the rest wait in
        `_backlog`. Whole plain frames of sync updates that follow one another
        are taken as one run (`ConnectionEdge.take_edits`): a fast writer's read
        holds thousands, and one Doc transaction for them all costs a fraction
        of one each."""
        run: list[bytes] = []
        is_writer = self._is_writer()
        for index, event in enumerate(events):
            if (
                is_writer
                and type(event) is Frame
                and event.fin
                and event.opcode is Opcode.BINARY
                and event.data[:2] == _SYNC_UPDATE_PREFIX
            ):
                run.append(bytes(event.data))
                continue
            if run:
                self._take_run(run)
                run = []
                if self._is_read_paused:
                    self._backlog = events[index:]
                    return
            if isinstance(event, Request):
                self._handshake(event)
                is_writer = self._is_writer()
            else:
                self._on_frame(event)
            if self._is_read_paused:
                self._backlog = events[index + 1 :]
                return
        if run:
            self._take_run(run)

    def _is_writer(self) -> bool:
        """Whether this connection's edits may form runs (a read-only one's are
        refused one by one)."""
        peer = self._peer
        return peer is not None and not peer.is_read_only

    def _take_run(self, run: list[bytes]) -> None:
        # One edit alone takes the plain path (`take`): the common case of fan-out.
        self._on_message(run[0] if len(run) == 1 else run, False)

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

    def _on_message(self, data: bytes | list[bytes], is_text: bool) -> None:
        """One message, or a run of sync updates (see `_take_events`)."""
        edge, peer, room = self._edge, self._peer, self._room
        if edge is None or peer is None or room is None or not peer.is_open:
            return  # refused or closing: what it still sends is dropped
        try:
            if is_text:
                peer.note_received()
                raise UnsupportedData(TEXT_FRAME_REASON)
            if type(data) is bytes:
                delay_s = edge.take(peer, room, data)
            else:
                delay_s = edge.take_edits(peer, room, cast(list[bytes], data))
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
        backlog, self._backlog = self._backlog, None
        if backlog:
            self._take_events(backlog)
            if self._is_read_paused:
                return
        transport = self._transport
        if transport is not None and not self._is_lost and not transport.is_closing():
            transport.resume_reading()

    # the pings' PingTarget (collab.api.socket_liveness), its read part

    def is_alive_since(self, sent_at: float) -> bool:
        return self._is_read_paused or self._last_read_at > sent_at
