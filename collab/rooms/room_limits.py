"""A room's limits, and the checks made before an update is applied.

Owns `RoomLimits` and the `DocumentLimits` part of `Room`: the document's size
(an estimate, made exact by one encode only near the limit) and the history of
a deleted incarnation (its tombstone) that an old client might try to bring
back. Apart from the relay algorithm in collab.rooms.room so that it reads as
y-websocket's; a part of the class rather than an object of its own because
`ensure_room_for` and the size estimate run for every update, and a mixin adds
no call or attribute hop there. It never changes the Doc: it measures or refuses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, get_state

from collab.errors import DeletedHistory, DocumentTooLarge, InvalidUpdate
from collab.protocol.codec import decode_state_vector
from collab.rooms.presence import PresenceLimits
from collab.rooms.yrs_panics import yrs_panics_as


@dataclass(frozen=True, slots=True)
class RoomLimits:
    max_document_bytes: int = 128 * 1024 * 1024
    max_awareness_bytes: int = 64 * 1024
    presence: PresenceLimits = field(default_factory=PresenceLimits)

    @property
    def size_margin_bytes(self) -> int:
        """How far past `max_document_bytes` a document may get: 1/64 of it, so
        that near the limit the Doc is encoded at most once per that much growth."""
        return max(1, self.max_document_bytes // 64)


class DocumentLimits:
    """The size and tombstone checks of a `Room` (its state is set by `Room`)."""

    doc: Doc[Any]
    _limits: RoomLimits
    # Encoded size of the state, over-estimated by adding each change's size;
    # recomputed exactly only when the estimate nears the limit (`_check_size`).
    size_bytes: int
    _exact_size: int | None  # `size_bytes` when it was last exact
    # client id -> clock that a deleted earlier incarnation reached (its tombstone)
    tombstone_clocks: dict[int, int]

    def _refuse_deleted_history(self, update: bytes) -> None:
        try:
            clocks = decode_state_vector(get_state(update))
        except ValueError as exc:
            raise InvalidUpdate(f"invalid Yjs update: {exc}") from exc
        deleted = self.tombstone_clocks
        if any(client_id in deleted for client_id, clock in clocks.items() if clock):
            raise DeletedHistory(
                "this update carries history of the deleted document: discard local state"
            )

    def ensure_room_for(self, incoming: int) -> None:
        """`DocumentTooLarge` if `incoming` more bytes may take the document past
        its limit (cheap unless the document is near it)."""
        if self.size_bytes + incoming > self._limits.max_document_bytes:
            self._check_size(incoming)

    def _check_size(self, incoming: int) -> None:
        """The estimate says `incoming` bytes may not fit. An exact size is a full
        encode of the Doc, so it is not taken for every update near the limit:
        only once the estimate has grown by `size_margin_bytes` since the last
        one, or before a refusal (a refusal is always exact). Between two, an
        update is judged by the last exact size, so the document ends below the
        limit plus the margin."""
        limit, exact = self._limits.max_document_bytes, self._exact_size
        grown = 0 if exact is None else self.size_bytes - exact
        if (
            exact is None
            or grown >= self._limits.size_margin_bytes
            or (grown > 0 and exact + incoming > limit)
        ):
            with yrs_panics_as(RuntimeError):
                exact = len(self.doc.get_update())
            self.size_bytes = self._exact_size = exact
        if exact + incoming > limit:
            raise DocumentTooLarge(f"document of {exact} bytes would exceed {limit} bytes")
