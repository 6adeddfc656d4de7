"""From stored rows to a Doc: loading a document, and catching a live room up.

Owns turning what `DocumentStore.load` returns into a pycrdt Doc - the newest
snapshot, then every log row still present, skipping (and quarantining) rows
that no longer decode - and `catch_up`, which brings a room that is already
live up to date with storage (after another process compacted it, or when the
stream between processes lost messages) without storing anything again.

Applying to a Doc is linear; pycrdt's merge_updates is not, so it is not used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc

from collab.metrics import Metrics
from collab.rooms.room import Room
from collab.storage.store import DocumentStore, QuarantineRows, StoredDocument
from collab.storage.writer import UpdateWriter

logger = logging.getLogger(__name__)

_QUARANTINE_ROUNDS = 10


@dataclass(frozen=True, slots=True)
class BadRows:
    """Stored rows of one document that did not decode."""

    snapshot_ids: tuple[int, ...] = ()
    row_ids: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.snapshot_ids or self.row_ids)


@dataclass(frozen=True, slots=True)
class LoadedDocument:
    stored: StoredDocument
    doc: Doc[Any]
    row_ids: tuple[int, ...]  # the log rows `doc` holds (every row that decoded)


def apply_stored(stored: StoredDocument, document: str) -> tuple[Doc[Any], BadRows]:
    """Snapshot, then each log row, skipping rows that do not decode."""
    doc: Doc[Any] = Doc()
    bad_snapshots: list[int] = []
    bad_updates: list[int] = []
    rows = [(stored.snapshot, stored.snapshot_id, bad_snapshots)] if stored.snapshot else []
    row_ids = stored.row_ids or [-1] * len(stored.updates)
    rows += [(u, i, bad_updates) for u, i in zip(stored.updates, row_ids, strict=True)]
    with doc.transaction():
        for data, row_id, bad in rows:
            try:
                doc.apply_update(data)
            except (ValueError, RuntimeError):
                # Only the writer stores updates, and only ones the Doc accepted: a
                # row that fails now was damaged in storage. Keep everything else.
                logger.error("doc=%s stored row %s does not decode: skipped", document, row_id)
                bad.append(-1 if row_id is None else row_id)
    return doc, BadRows(tuple(bad_snapshots), tuple(bad_updates))


def build_doc(stored: StoredDocument, document: str) -> Doc[Any]:
    return apply_stored(stored, document)[0]


class DocumentLoader:
    """Reads a document from the store into a Doc, quarantining rows that do not
    decode (through the writer), so a damaged row costs its content, not the
    document."""

    def __init__(self, store: DocumentStore, writer: UpdateWriter, metrics: Metrics) -> None:
        self._store = store
        self._writer = writer
        self._metrics = metrics

    async def load(self, name: str) -> LoadedDocument:
        """Load; rows that do not decode are quarantined, then the load is repeated,
        so a damaged newest snapshot gives way to the one before it."""
        for _ in range(_QUARANTINE_ROUNDS):
            stored = await self._store.load(name)
            doc, bad = apply_stored(stored, name)
            if not bad:
                return LoadedDocument(stored, doc, tuple(stored.row_ids))
            self._metrics.quarantined_rows.inc(len(bad.snapshot_ids) + len(bad.row_ids))
            logger.error(
                "doc=%s quarantining rows that do not decode: snapshots %s, updates %s",
                name,
                list(bad.snapshot_ids),
                list(bad.row_ids),
            )
            await self._writer.submit(
                QuarantineRows(
                    name, "does not decode as a Yjs update", bad.snapshot_ids, bad.row_ids
                )
            )
        # Still damaged after many rounds: serve what decodes, and never let a
        # snapshot delete the damaged rows (they are evidence).
        good = tuple(i for i in stored.row_ids if i not in set(bad.row_ids))
        return LoadedDocument(stored, doc, good)


def is_same_incarnation(room: Room, loaded: LoadedDocument) -> bool:
    """Whether `loaded` is still the document `room` holds (not deleted since)."""
    return room.incarnation is None or room.incarnation == loaded.stored.incarnation


def catch_up(room: Room, loaded: LoadedDocument) -> bool:
    """Apply to a live room whatever storage holds that it lacks (relayed to its
    peers, not stored again). Afterwards the room holds every row loaded and the
    snapshot they were loaded with, so its next snapshot may delete those rows
    and build on that snapshot's sequence.

    Only a room that is open, and whose document was not deleted since it was
    loaded: a closed room applies nothing, so it must not claim the rows either
    (a snapshot of it would delete rows its state lacks). False if nothing was
    applied for that reason."""
    if room.is_closed or not is_same_incarnation(room, loaded):
        return False
    room.apply_remote(loaded.doc.get_update(room.doc.get_state()), loaded.stored.owners)
    room.ledger.note_loaded(loaded.row_ids, loaded.stored.snapshot_seq)
    return True
