"""Bytes out of one /ws/{document} connection: the socket as the peer's `Transport`.

Owns `SocketOutput`, the lowest layer of collab.api.socket's connection: the
sans-I/O `ServerProtocol` (python-websockets: the framing, the handshake,
permessage-deflate), the asyncio transport, and writing to it:

- the peer's sender awaits `send_bytes`, which writes the message's frame
  (framed once for all its recipients, collab.api.frames) and waits only while
  the transport has paused writing (its buffer is over the high-water mark);
- `write_now` writes at once when the socket takes it without waiting;
- `_write_out` flushes what the protocol queued (handshake replies, pongs,
  close frames, pings).

A layer of the connection's class rather than an object of its own: every
relay goes through `send_bytes` or `write_now`, and a base class adds no call
or attribute hop there. It never reads: collab.api.socket_input does.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, cast

from websockets.protocol import State
from websockets.server import ServerProtocol

from collab.api.assembly import DeferredInflate, OfferedExtensions
from collab.api.connection import ConnectionEdge

logger = logging.getLogger(__name__)


class _ProtocolLog(logging.LoggerAdapter[logging.Logger]):
    """Where websockets' protocol objects log: their errors and debug lines, not
    their one INFO line, "connection closed", which says with no document or
    peer what the edge logs of every disconnect (`doc=... peer=... disconnected
    (code ...)`), at the cost of a second log record per connection."""

    def info(self, msg: object, *args: object, **kwargs: Any) -> None:
        return


_protocol_log = _ProtocolLog(logger)


class SocketOutput(asyncio.Protocol):
    """The write side of one WebSocket connection; satisfies the peer's `Transport`
    (with `close`, collab.api.socket) and sends the pings of `Pings`.

    `edge` is None before the application has started (refused 503)."""

    __slots__ = (
        "_client",
        "_conn",
        "_corked",
        "_edge",
        "_inflater",
        "_is_lost",
        "_is_write_paused",
        "_loop",
        "_max_size",
        "_offered_extensions",
        "_transport",
        "_writable",
    )

    def __init__(
        self,
        edge: ConnectionEdge | None,
        extensions: OfferedExtensions,
        max_message_bytes: int,
        *,
        is_request_parsed: bool = False,
    ) -> None:
        self._edge = edge
        self._offered_extensions = extensions
        self._max_size = max_message_bytes * 2 + 1
        self._conn = self._new_protocol(State.OPEN if is_request_parsed else State.CONNECTING)
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._client = "-"
        self._writable: asyncio.Future[None] | None = None  # set while writing is paused
        self._is_write_paused = False
        self._inflater: DeferredInflate | None = None  # if permessage-deflate was negotiated
        self._is_lost = False
        # While the handshake is answered: what is written, to go out as one write.
        self._corked: list[bytes] | None = None

    def _new_protocol(self, state: State) -> ServerProtocol:
        # OPEN: the handshake request is taken parsed (collab.api.socket's
        # `upgrade`), so websockets' parser starts at the frames. The limit is
        # above the message limit, so an oversized message reaches the edge's
        # check (4413 and a log line) instead of the library's 1009.
        return ServerProtocol(
            extensions=self._offered_extensions,
            state=state,
            max_size=self._max_size,
            logger=_protocol_log,
        )

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peername = transport.get_extra_info("peername")
        if isinstance(peername, tuple) and len(peername) >= 2:
            self._client = f"{peername[0]}:{peername[1]}"

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
        if self._corked is not None:
            self._corked.append(edge.frames.frame(data, self._inflater))
            return True
        transport.write(edge.frames.frame(data, self._inflater))
        return True

    # the pings' PingTarget (collab.api.socket_liveness), its write part

    def send_ping(self, payload: bytes) -> bool:
        if self._conn.state is not State.OPEN or self._is_lost:
            return False
        self._conn.send_ping(payload)
        self._write_out()
        return True

    # writing and closing the socket

    def _write_out(self) -> None:
        data = self._conn.data_to_send()
        if self._corked is not None:
            self._corked.extend(data)
        elif data and self._transport is not None and not self._is_lost:
            self._transport.write(b"".join(data))

    def _cork(self, first: bytes) -> None:
        """Hold what is written from now on, after `first`, until `_uncork`: the
        101 response, the room's first sync messages (and a refusal's close frame)
        go out in one write, one TCP segment, instead of one each. The cork is
        only held within one synchronous call (the handshake); `send_bytes`
        cannot run meanwhile."""
        self._corked = [first]

    def _uncork(self) -> None:
        corked, self._corked = self._corked, None
        if corked and self._transport is not None and not self._is_lost:
            self._transport.write(b"".join(corked))

    def _close_transport(self) -> None:
        if self._transport is not None:
            self._transport.close()
