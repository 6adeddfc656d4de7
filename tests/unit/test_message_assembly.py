"""Messages bounded by their kind before they are decoded or inflated
(collab.api.assembly), without sockets."""

from __future__ import annotations

import zlib

import pytest
from pycrdt import write_var_uint
from websockets.extensions.permessage_deflate import PerMessageDeflate
from websockets.frames import Frame, Opcode

from collab.api.assembly import DeferredInflate, DeflatedFrame, MessageAssembly, MessageLimits
from collab.config import Settings
from collab.errors import AwarenessTooLarge, DocumentTooLarge, MessageTooBig
from collab.metrics import Metrics
from collab.protocol.codec import peek_message_kind

LIMITS = MessageLimits(
    max_message_bytes=1_000_000,
    max_awareness_bytes=1_000,
    max_step1_bytes=2_000,
    max_update_bytes=50_000,
)


def deflated(data: bytes) -> bytes:
    """`data` as a permessage-deflate payload (RFC 7692: the flush tail removed)."""
    compressor = zlib.compressobj(wbits=-12)
    return (compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]


def received(extension: DeferredInflate, parts: list[bytes]) -> list[Frame]:
    """The frames of one compressed message as websockets' parser hands them on
    through the extension: still compressed."""
    frames = []
    for index, part in enumerate(parts):
        is_first, is_final = index == 0, index == len(parts) - 1
        opcode = Opcode.BINARY if is_first else Opcode.CONT
        frame = extension.decode(Frame(opcode, part, fin=is_final, rsv1=is_first))
        assert isinstance(frame, DeflatedFrame) and frame.data == part and not frame.rsv1
        frames.append(frame)
    return frames


def deflate_extension() -> DeferredInflate:
    return DeferredInflate(PerMessageDeflate(True, True, 12, 12))


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (b"\x01\x05", (1, None)),
        (b"\x00\x00\x03", (0, 0)),
        (b"\x00\x02", (0, 2)),
        (b"\x00", None),  # a sync message whose sync type has not arrived
        (b"", None),
        (b"\x03", (3, None)),
    ],
)
def test_the_kind_is_read_from_the_first_bytes(head, kind):
    assert peek_message_kind(head) == kind


def test_each_kind_has_its_bound():
    assert LIMITS.limit_for(b"\x01\x85\x01") == 1_000
    assert LIMITS.limit_for(b"\x00\x00\x85") == 2_000
    assert LIMITS.limit_for(b"\x00\x02\x85") == 50_000
    assert LIMITS.limit_for(b"\x00\x01\x85") == 50_000
    assert LIMITS.limit_for(b"\x02") == 1_000_000
    assert LIMITS.limit_for(b"\x00") is None  # cannot tell yet


def test_the_bounds_follow_the_settings():
    limits = MessageLimits.of(
        Settings(max_awareness_bytes=100, max_state_vector_entries=10, max_document_bytes=0)
    )
    assert limits.max_awareness_bytes == 116
    assert limits.max_step1_bytes == 10 * 13 + 16
    assert limits.max_update_bytes == limits.max_message_bytes  # 0: no document limit


def test_a_whole_message_over_its_kind_is_refused_with_its_code():
    with pytest.raises(AwarenessTooLarge):
        LIMITS.check(b"\x01" + bytes(1_000))
    with pytest.raises(MessageTooBig, match="sync step 1"):
        LIMITS.check(b"\x00\x00" + bytes(2_000))
    with pytest.raises(DocumentTooLarge):
        LIMITS.check(b"\x00\x02" + bytes(50_000))
    LIMITS.check(b"\x00\x02" + bytes(40_000))  # within: no refusal


def test_a_deflate_bomb_is_inflated_only_to_its_kinds_limit():
    metrics = Metrics()
    bomb = b"\x01" + write_var_uint(10_000_000) + bytes(10_000_000)
    payload = deflated(bomb)
    assert len(payload) < 20_000  # ~1000:1
    extension = deflate_extension()
    (frame,) = received(extension, [payload])
    assembly = MessageAssembly(LIMITS, metrics, extension, is_text=False)
    with pytest.raises(AwarenessTooLarge):
        assembly.add(bytes(frame.data), is_final=True)
    inflated = metrics.registry.get_sample_value("collab_inflated_bytes_total")
    assert inflated is not None and inflated <= LIMITS.max_awareness_bytes + 1


def test_a_compressed_message_in_fragments_is_put_back_together():
    message = b"\x00\x02" + write_var_uint(3_000) + b"abc" * 1_000
    payload = deflated(message)
    extension = deflate_extension()
    first, middle, last = received(extension, [payload[:1], payload[1:50], payload[50:]])
    assembly = MessageAssembly(LIMITS, Metrics(), extension, is_text=False)
    assert assembly.add(bytes(first.data), is_final=False) is None
    assert assembly.add(bytes(middle.data), is_final=False) is None
    assert assembly.add(bytes(last.data), is_final=True) == message


def test_plain_fragments_are_refused_as_soon_as_they_pass_the_bound():
    assembly = MessageAssembly(LIMITS, Metrics(), None, is_text=False)
    assert assembly.add(b"\x01\x7f", is_final=False) is None
    assert assembly.add(bytes(900), is_final=False) is None
    with pytest.raises(AwarenessTooLarge):
        assembly.add(bytes(200), is_final=False)
