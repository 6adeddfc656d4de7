"""Outgoing messages framed once per broadcast, not once per recipient.

The room hands the same `bytes` object to every peer it relays to (an update,
an awareness change, a keep-alive). `OutgoingFrames.frame` turns a message into
the WebSocket frame for one connection's encoding, and keeps the last few
frames, by the message's identity: the second to the Nth recipient get the same
frame bytes, written as they are (no header built, no payload copied, nothing
compressed again).

Compression is shared too. Every connection that negotiated permessage-deflate
compresses without context takeover (`server_no_context_takeover`, required by
the edge's factory), so a message compresses to the same bytes for every
connection with the same window: one `PerMessageDeflate` per window size
compresses it once. Messages outside `compress_bytes` are sent uncompressed,
which permessage-deflate allows per message (RFC 7692 6.1): tiny ones gain
nothing, and a big one (a large document's initial sync) would hold the event
loop for seconds per joiner.

Frames are made by websockets (`Frame.serialize`), never by hand.
"""

from __future__ import annotations

from collections import OrderedDict

from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

_MAX_CACHED_BYTES = 4 * 1024 * 1024  # frames kept for the next recipients, at most
_MAX_CACHED_MESSAGE_BYTES = 256 * 1024  # a bigger message is framed per recipient
MIN_COMPRESS_BYTES = 64
MAX_COMPRESS_BYTES = 1024 * 1024


class OutgoingFrames:
    """What every connection of one server shares to frame its messages."""

    __slots__ = ("_cached_bytes", "_compressors", "_frames", "compressed", "framed")

    def __init__(self) -> None:
        # id(message) -> (message, window bits or 0 for plain, frame). The message
        # is kept, so its id cannot be reused while the entry lives.
        # Oldest first: an OrderedDict drops its oldest entry in O(1), where a
        # dict's first entry is found by skipping the slots of those dropped
        # before it (bench/RESULTS.md, session 9).
        self._frames: OrderedDict[tuple[int, int], tuple[bytes, bytes]] = OrderedDict()
        self._cached_bytes = 0
        self._compressors: dict[tuple[int, tuple[tuple[str, int], ...]], PerMessageDeflate] = {}
        self.framed = 0  # messages framed (for tests and the bench)
        self.compressed = 0  # ...of which compressed

    def frame(self, message: bytes, deflate: PerMessageDeflate | None) -> bytes:
        """`message` as one binary frame for a connection whose negotiated
        permessage-deflate is `deflate` (None: none)."""
        if deflate is not None and not MIN_COMPRESS_BYTES <= len(message) <= MAX_COMPRESS_BYTES:
            deflate = None
        window = deflate.local_max_window_bits if deflate is not None else 0
        key = (id(message), window)
        entry = self._frames.get(key)
        if entry is not None and entry[0] is message:
            return entry[1]
        frame = self._serialize(message, deflate)
        if len(message) <= _MAX_CACHED_MESSAGE_BYTES:
            self._keep(key, message, frame)
        return frame

    def _serialize(self, message: bytes, deflate: PerMessageDeflate | None) -> bytes:
        self.framed += 1
        extensions = []
        if deflate is not None:
            extensions.append(self._compressor(deflate))
            self.compressed += 1
        return Frame(Opcode.BINARY, message).serialize(mask=False, extensions=extensions)

    def _compressor(self, deflate: PerMessageDeflate) -> PerMessageDeflate:
        settings = tuple(sorted(deflate.compress_settings.items()))
        key = (deflate.local_max_window_bits, settings)
        compressor = self._compressors.get(key)
        if compressor is None:
            # No context takeover either way: a fresh compressor per message, the
            # same output for every connection with this window.
            compressor = PerMessageDeflate(
                True, True, 15, deflate.local_max_window_bits, dict(settings)
            )
            self._compressors[key] = compressor
        return compressor

    def _keep(self, key: tuple[int, int], message: bytes, frame: bytes) -> None:
        frames = self._frames
        if key in frames:
            self._cached_bytes -= len(frames.pop(key)[1])
        frames[key] = (message, frame)
        self._cached_bytes += len(frame)
        while self._cached_bytes > _MAX_CACHED_BYTES or len(frames) > 1024:
            self._cached_bytes -= len(frames.popitem(last=False)[1][1])
