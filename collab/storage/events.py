"""What happened to a document, as webhooks and the change feed tell it.

Owns the event types and the one JSON shape of an event, the same for a webhook
delivery's body and an entry of `GET /api/events`:

    {"id": 42, "type": "document.updated", "document": "notes",
     "occurred_at": "2026-12-02T03:04:05.678901Z", "data": {...}}

`id` is the event's sequence number: strictly increasing in the order events
were published, never reused; the feed's cursor. Pure: no database, no I/O.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    DOCUMENT_CREATED = "document.created"
    DOCUMENT_UPDATED = "document.updated"  # debounced: one per burst of editing
    VERSION_SAVED = "version.saved"
    DOCUMENT_RESTORED = "document.restored"
    DOCUMENT_DELETED = "document.deleted"


@dataclass(frozen=True, slots=True)
class Event:
    """A published event (it has its `seq`)."""

    seq: int
    type: EventType
    document: str
    occurred_at: float  # Unix seconds: when the change committed
    data: dict[str, Any]

    def payload(self) -> dict[str, Any]:
        return {
            "id": self.seq,
            "type": self.type.value,
            "document": self.document,
            # The same text as the feed's (pydantic's): UTC as "Z", microseconds.
            "occurred_at": datetime.fromtimestamp(self.occurred_at, tz=UTC)
            .isoformat(timespec="microseconds")
            .replace("+00:00", "Z"),
            "data": self.data,
        }

    def body(self) -> bytes:
        """The exact bytes a webhook receives (and signs over)."""
        return json.dumps(self.payload(), separators=(",", ":"), ensure_ascii=False).encode()


def event_of(seq: int, type_: str, document: str, occurred_at: float, data: str) -> Event:
    """An event from its stored columns (`data` is the stored JSON text)."""
    return Event(int(seq), EventType(type_), document, float(occurred_at), json.loads(data))


def updated_data(*, author: str | None, first_row: int, last_row: int) -> dict[str, Any]:
    """`document.updated`'s data: who changed it last (None if unknown), and the
    log sequence numbers (row ids) of the first and last update it covers."""
    return {"author": author, "from_seq": first_row, "seq": last_row}
