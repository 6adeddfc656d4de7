"""Snapshots of live rooms, safely with several processes on one database.

Owns writing a room's capture as a snapshot (`submit_snapshot`: one attempt,
which also compacts: the writer deletes the log rows the capture holds) and the
retry rules around it (`snapshot`): the store declines a snapshot that is
not built on the document's current snapshot sequence (`SnapshotConflict`:
another process saved one since) or while another process is compacting the
same document (`CompactionBusy`). On a conflict the room first catches up with
storage - so it holds the newer snapshot - and the snapshot is built again; an
explicit capture (a pre-restore version, which must show the state before the
restore) is merged with the newer snapshot instead of re-read from the room.
A snapshot that finds another process compacting the document waits its turn.

Owns the janitor's compaction tasks too (at most one per document, and one
writing at a time: a snapshot holds the writer for milliseconds, and the rooms
that fall due together - they started together - would hold every room's edits
behind all of theirs; collab.storage.writer commits each apart), and knows
which documents have a snapshot in progress of any kind (the janitor does not
unload those). Each process compacts the rows it wrote (and those it loaded);
the advisory lock keeps it to one compactor per document at a time.

A snapshot is written only of an open room, checked after every wait: a
deletion may close the room while a snapshot waits for its pending writes, and
a snapshot submitted after the deletion would bring the document back. The
store refuses one that lands late anyway (it never creates a document, and
checks the incarnation); a deletion also cancels the janitor's compaction.
Either way the caller learns `DocumentNotFound` for a deleted document.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from functools import partial
from typing import Any

from pycrdt import Doc

from collab.content import text_preview
from collab.errors import CloseCode, DocumentNotFound
from collab.metrics import Metrics
from collab.rooms.commit_path import RoomClosed, UpdateSink
from collab.rooms.ledger import SnapshotCapture
from collab.rooms.loading import DocumentLoader, catch_up, is_same_incarnation
from collab.rooms.room import Room
from collab.storage.store import (
    CompactionBusy,
    DocumentDeleted,
    SaveSnapshot,
    SnapshotConflict,
    SnapshotKind,
)

logger = logging.getLogger(__name__)

_ATTEMPTS = 20
_BUSY_BACKOFF_S = 0.02


class SnapshotNotSaved(RuntimeError):
    """Other processes kept compacting the document; the state is still in memory."""


class Compactor:
    """Writes snapshots of live rooms through the writer, retrying conflicts with
    other processes; runs the janitor's background compactions (one per document)."""

    def __init__(
        self,
        loader: DocumentLoader,
        sink: UpdateSink,
        metrics: Metrics,
        *,
        auto_version_window_s: float,
    ) -> None:
        self._loader = loader
        self._sink = sink
        self._metrics = metrics
        self._window_s = auto_version_window_s
        self._tasks: dict[str, asyncio.Task[int | None]] = {}
        self._one_at_a_time = asyncio.Lock()  # the janitor's compactions
        self._in_progress: Counter[str] = Counter()  # snapshots of any kind, by document

    def is_compacting(self, name: str) -> bool:
        """A snapshot of the document is in progress (the janitor's, a save, a restore)."""
        return name in self._tasks or name in self._in_progress

    def start(self, room: Room) -> None:
        """Compact `room` in the background (the janitor's sweep cannot await)."""
        if room.name in self._tasks:
            return
        task = asyncio.create_task(self._compact(room), name=f"compact {room.name}")
        self._tasks[room.name] = task
        task.add_done_callback(lambda _: self._tasks.pop(room.name, None))

    async def cancel(self, name: str) -> None:
        """Stop the janitor's compaction of the document, if one runs, and wait
        for it to end (a deletion: nothing of it is submitted afterwards)."""
        task = self._tasks.get(name)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _compact(self, room: Room) -> int | None:
        try:
            async with self._one_at_a_time:
                return await self.snapshot(room)
        except (RoomClosed, DocumentNotFound) as exc:
            logger.info("doc=%s compaction stopped: %s", room.name, exc)
            return None
        except Exception:  # task boundary: the state stays in memory; next sweep retries
            logger.exception("doc=%s compaction failed", room.name)
            return None

    def submit_snapshot(
        self,
        room: Room,
        capture: SnapshotCapture,
        kind: SnapshotKind = SnapshotKind.AUTO,
        *,
        label: str | None = None,
        author: str | None = None,
        merge_window_s: float = 0.0,
        restored_id: int | None = None,
    ) -> asyncio.Future[int | None]:
        """Submit `capture` as one snapshot, once. Resolves to the snapshot's id, or
        fails (e.g. `SnapshotConflict`: another process saved one meanwhile).
        Raises `RoomClosed` (or `DocumentNotFound`) if the room is closed."""
        _check_open(room)
        write = self._sink.submit(
            SaveSnapshot(
                room.name,
                capture.state,
                preview=text_preview(capture.state) if capture.preview is None else capture.preview,
                kind=kind,
                label=label,
                author=author,
                merge_window_s=merge_window_s,
                row_ids=capture.row_ids,
                base_seq=capture.base_seq,
                incarnation=room.incarnation,
                restored_id=restored_id,
            )
        )
        write.add_done_callback(partial(room.ledger.after_snapshot, capture))
        return write

    async def snapshot(
        self,
        room: Room,
        kind: SnapshotKind = SnapshotKind.AUTO,
        *,
        label: str | None = None,
        author: str | None = None,
        capture: SnapshotCapture | None = None,
        restored_id: int | None = None,
    ) -> int:
        """Write a snapshot of `room` (of `capture` if given), retrying what other
        processes make it conflict with; its id. Raises `DocumentNotFound` if the
        document is deleted meanwhile, `RoomClosed` if the room closes otherwise."""
        self._in_progress[room.name] += 1
        try:
            return await self._snapshot(
                room, kind, label=label, author=author, capture=capture, restored_id=restored_id
            )
        finally:
            self._in_progress[room.name] -= 1
            if not self._in_progress[room.name]:
                del self._in_progress[room.name]

    async def _snapshot(
        self,
        room: Room,
        kind: SnapshotKind,
        *,
        label: str | None,
        author: str | None,
        capture: SnapshotCapture | None,
        restored_id: int | None = None,
    ) -> int:
        _check_open(room)
        is_explicit = capture is not None
        current = capture or room.capture()
        window_s = self._window_s if kind is SnapshotKind.AUTO else 0.0
        for attempt in range(_ATTEMPTS):
            current = await room.ledger.settle(current)
            try:
                # Checks that the room is still open: a deletion may have closed it
                # while we waited for its writes.
                snapshot_id = await self.submit_snapshot(
                    room,
                    current,
                    kind,
                    label=label,
                    author=author,
                    merge_window_s=window_s,
                    restored_id=restored_id,
                )
            except DocumentDeleted as exc:
                # Deleted by another process (its message may not be here yet).
                room.write_refused(exc)
                raise DocumentNotFound(room.name) from exc
            except CompactionBusy:
                # Another process holds the document's compaction lock for the
                # length of one transaction: wait our turn (its snapshot does not
                # hold our rows; ours must still be written).
                self._metrics.snapshots_declined.labels("busy").inc()
                await asyncio.sleep(_BUSY_BACKOFF_S * (attempt + 1))
                continue
            except SnapshotConflict as exc:
                self._metrics.snapshots_declined.labels("conflict").inc()
                logger.info("doc=%s %s: catching up and saving again", room.name, exc)
                loaded = await self._loader.load(room.name)
                if not is_same_incarnation(room, loaded):
                    deleted = DocumentDeleted(
                        room.name, room.incarnation, loaded.stored.incarnation
                    )
                    room.write_refused(deleted)
                    raise DocumentNotFound(room.name) from exc
                if not catch_up(room, loaded):
                    _check_open(room)
                if is_explicit:
                    state = _merge(current.state, loaded.stored.snapshot)
                    current = SnapshotCapture(state, current.row_ids, loaded.stored.snapshot_seq)
                else:
                    current = room.capture()
                continue
            assert snapshot_id is not None  # a SaveSnapshot resolves to its id
            return snapshot_id
        raise SnapshotNotSaved(f"doc={room.name}: no snapshot saved after {_ATTEMPTS} attempts")

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _check_open(room: Room) -> None:
    if not room.is_closed:
        return
    if room.close_code is CloseCode.DOCUMENT_DELETED:
        raise DocumentNotFound(room.name)
    raise RoomClosed(f"doc={room.name}: the room closed before its snapshot was saved")


def _merge(state: bytes, snapshot: bytes | None) -> bytes:
    if snapshot is None:
        return state
    doc: Doc[Any] = Doc()
    doc.apply_update(snapshot)
    doc.apply_update(state)
    return doc.get_update()
