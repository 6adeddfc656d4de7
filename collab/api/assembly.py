"""Incoming messages bounded before they are decoded, and before they are inflated.

A message's first bytes say what it is (y-protocols: the message type, then for
a sync message the sync type), and each kind has its own bound
(`MessageLimits`): an awareness update at most COLLAB_MAX_AWARENESS_BYTES
(4431), a sync step 1 at most what COLLAB_MAX_STATE_VECTOR_ENTRIES entries take
(4413), an update at most COLLAB_MAX_MESSAGE_BYTES and the document limit
(4413). `ConnectionEdge.take` checks a whole message's size against its kind;
`MessageAssembly` does it while the message arrives:

- **compressed** (permessage-deflate): websockets' extension is replaced by
  `DeferredInflate`, which hands a compressed message on still compressed
  (`DeflatedFrame`), and the assembly inflates it here with `max_length`: first
  a few bytes, to learn the kind, then never more than one byte past the kind's
  limit. A 1000:1 bomb costs its limit, not its inflated size.
- **fragmented**: the fragments are counted against the limit as they arrive
  (the connection also bounds the time a message may take).

What websockets still does: the frame format, masking, the handshake and the
negotiation, and its own bound on a frame's raw (compressed) size.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from websockets.extensions.base import Extension, ServerExtensionFactory
from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import CTRL_OPCODES, Frame, Opcode
from websockets.typing import ExtensionParameter

from collab.config import Settings
from collab.errors import (
    AwarenessTooLarge,
    DocumentTooLarge,
    MessageTooBig,
    ProtocolError,
    Refusal,
)
from collab.metrics import Metrics
from collab.protocol.codec import MessageType, SyncType, peek_message_kind

HEAD_BYTES = 16  # enough for a message type and a sync type (two varints)
_SYNC_HEADER_BYTES = 16  # the types and a payload length, around a bounded payload
_STATE_VECTOR_ENTRY_BYTES = 13  # a client id (uint32: 5 varint bytes) and a clock (53 bits: 8)
_EMPTY_UNCOMPRESSED_BLOCK = b"\x00\x00\xff\xff"  # RFC 7692 7.2.2: removed by the sender


@dataclass(frozen=True, slots=True)
class MessageLimits:
    """The most bytes one message of each kind may have (inflated)."""

    max_message_bytes: int
    max_awareness_bytes: int
    max_step1_bytes: int
    max_update_bytes: int

    @classmethod
    def of(cls, settings: Settings) -> MessageLimits:
        top = settings.max_message_bytes
        awareness = settings.max_awareness_bytes
        entries = settings.max_state_vector_entries
        document = settings.max_document_bytes
        return cls(
            max_message_bytes=top,
            max_awareness_bytes=min(top, awareness + _SYNC_HEADER_BYTES) if awareness else top,
            max_step1_bytes=(
                min(top, entries * _STATE_VECTOR_ENTRY_BYTES + _SYNC_HEADER_BYTES)
                if entries
                else top
            ),
            max_update_bytes=min(top, document + _SYNC_HEADER_BYTES) if document else top,
        )

    def limit_for(self, head: bytes) -> int | None:
        """The bound of a message starting with `head`; None if `head` cannot tell yet."""
        kind = peek_message_kind(head)
        if kind is None:
            return self.max_message_bytes if len(head) >= HEAD_BYTES else None
        message_type, sync_type = kind
        if message_type == MessageType.AWARENESS:
            return self.max_awareness_bytes
        if message_type == MessageType.SYNC:
            if sync_type == SyncType.STEP1:
                return self.max_step1_bytes
            return self.max_update_bytes
        return self.max_message_bytes

    def check(self, message: bytes) -> None:
        """Refuse a whole message over its kind's bound, before it is decoded."""
        size = len(message)
        if (
            size <= self.max_update_bytes
            and size <= self.max_awareness_bytes
            and size <= self.max_step1_bytes
        ):
            return  # under every kind's bound (nearly every message): no need to peek
        limit = self.limit_for(message[:HEAD_BYTES]) or self.max_message_bytes
        if len(message) > limit:
            raise self.refusal(message[:HEAD_BYTES], len(message), limit)

    def refusal(self, head: bytes, size: int, limit: int) -> Refusal:
        """The refusal of a message of `size` bytes (so far) over `limit`: its
        kind's close code (4431 awareness, 4414 an update past the document
        limit, else 4413)."""
        kind = peek_message_kind(head)
        size_text = f"of at least {size} bytes exceeds {limit}"
        if kind is not None and kind[0] == MessageType.AWARENESS:
            return AwarenessTooLarge(f"awareness update {size_text}")
        if kind == (MessageType.SYNC, SyncType.STEP1):
            return MessageTooBig(f"sync step 1 {size_text} (COLLAB_MAX_STATE_VECTOR_ENTRIES)")
        if kind is not None and kind[0] == MessageType.SYNC and limit < self.max_message_bytes:
            return DocumentTooLarge(f"update {size_text}, the document limit")
        return MessageTooBig(f"message {size_text}")


class DeflatedFrame(Frame):
    """A data frame of a compressed message, still compressed (`DeferredInflate`)."""


class DeferredInflate(PerMessageDeflate):
    """permessage-deflate that leaves incoming messages compressed for the
    assembly to inflate within their limits. Its zlib objects are made on first
    use: an idle connection that negotiated deflate holds none."""

    def __init__(self, model: PerMessageDeflate) -> None:
        # No takeover on the parent: it then allocates no zlib object up front.
        super().__init__(True, True, model.remote_max_window_bits, model.local_max_window_bits)
        self.remote_no_context_takeover = model.remote_no_context_takeover
        self.local_no_context_takeover = model.local_no_context_takeover
        self.compress_settings = model.compress_settings
        self._inflater: Any = None  # zlib decompressobj, for the current or last message

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        if frame.opcode in CTRL_OPCODES:
            return frame
        if frame.opcode is Opcode.CONT:
            if not self.decode_cont_data:
                return frame
            if frame.rsv1:
                raise ProtocolError("RSV1 bit set in continuation frame")
            if frame.fin:
                self.decode_cont_data = False
        else:
            if not frame.rsv1:
                return frame
            if not frame.fin:
                self.decode_cont_data = True
            if self.remote_no_context_takeover or self._inflater is None:
                self._inflater = zlib.decompressobj(wbits=-self.remote_max_window_bits)
        return DeflatedFrame(frame.opcode, frame.data, frame.fin)

    def encode(self, frame: Frame) -> Frame:
        if not self.local_no_context_takeover and not hasattr(self, "encoder"):
            self.encoder = zlib.compressobj(
                wbits=-self.local_max_window_bits, **self.compress_settings
            )
        return super().encode(frame)

    def inflate(self, data: bytes, max_length: int) -> tuple[bytes, bytes]:
        """At most `max_length` bytes inflated from `data`, and the input left."""
        out: bytes = self._inflater.decompress(data, max_length)
        return out, self._inflater.unconsumed_tail


class DeferredInflateFactory(ServerPerMessageDeflateFactory):
    """Negotiates as websockets does; the extension it makes is `DeferredInflate`."""

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, extension = super().process_request_params(params, accepted_extensions)
        return response, DeferredInflate(extension)


# What a connection offers in its handshake (None: no extension).
OfferedExtensions = list[ServerExtensionFactory] | None


def offered_extensions(*, is_deflate_offered: bool) -> OfferedExtensions:
    """permessage-deflate as uvicorn offers it (4 kB windows, a smaller memLevel:
    memory per connection), with no context takeover for what the server sends:
    a message then compresses to the same bytes for every recipient
    (collab.api.frames)."""
    if not is_deflate_offered:
        return None
    return [
        DeferredInflateFactory(
            server_no_context_takeover=True,
            server_max_window_bits=12,
            client_max_window_bits=12,
            compress_settings={"memLevel": 5},
        )
    ]


class MessageAssembly:
    """One incoming message put together from its frames, refused (`Refusal`) the
    moment it passes its kind's limit; compressed parts inflated within it."""

    __slots__ = ("_inflater", "_limit", "_limits", "_metrics", "_parts", "_size", "is_text")

    def __init__(
        self,
        limits: MessageLimits,
        metrics: Metrics,
        inflater: DeferredInflate | None,
        *,
        is_text: bool,
    ) -> None:
        self._limits = limits
        self._metrics = metrics
        self._inflater = inflater
        self._parts: list[bytes] = []
        self._size = 0
        self._limit: int | None = None  # until the first bytes tell the kind
        self.is_text = is_text

    def add(self, data: bytes, *, is_final: bool) -> bytes | None:
        """Add one frame's data; the whole message once `is_final`."""
        if self._inflater is None:
            self._take(data)
        else:
            self._inflate(data + _EMPTY_UNCOMPRESSED_BLOCK if is_final else data)
        if not is_final:
            return None
        parts = self._parts
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _inflate(self, data: bytes) -> None:
        assert self._inflater is not None
        while True:
            bound = self._limit if self._limit is not None else HEAD_BYTES
            budget = max(bound - self._size + 1, 1)  # one past the bound: over is seen
            out, data = self._inflater.inflate(data, budget)
            self._metrics.inflated_bytes.inc(len(out))
            self._take(out)
            if not data and len(out) < budget:
                return

    def _take(self, part: bytes) -> None:
        if part:
            self._parts.append(part)
            self._size += len(part)
        if self._limit is None:
            self._limit = self._limits.limit_for(self._head())
        limit = self._limit if self._limit is not None else self._limits.max_message_bytes
        if self._size > limit:
            raise self._limits.refusal(self._head(), self._size, limit)

    def _head(self) -> bytes:
        """The message's first HEAD_BYTES bytes so far (no copy of a big part)."""
        head = b""
        for part in self._parts:
            head += part[: HEAD_BYTES - len(head)]
            if len(head) >= HEAD_BYTES:
                break
        return head
