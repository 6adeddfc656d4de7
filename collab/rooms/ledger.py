"""A room's compaction ledger: what a snapshot of its Doc may replace, and when.

Owns, for one live room: the log rows whose content its Doc holds (rows it
wrote, or loaded from storage - never rows another process wrote and it only
heard of: those can sit pending inside yrs, outside any snapshot), the writes
still in flight, the snapshot sequence its Doc is known to contain, and how many
of its own edits are not compacted yet. A snapshot built from a `capture` may
delete exactly `row_ids` and must be saved on `base_seq` (see collab.storage.store).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SnapshotCapture:
    """A room's state at one moment, and what saving it as a snapshot deletes."""

    state: bytes
    row_ids: tuple[int, ...]  # log rows whose content `state` holds
    base_seq: int  # the snapshot sequence `state` is known to contain
    # writes of changes `state` holds that were not committed yet (see `settle`)
    pending: tuple[asyncio.Future[int | None], ...] = ()
    # the start of its text, read from the room's Doc as it was captured (None:
    # to be read from `state`)
    preview: str | None = None


class CompactionLedger:
    def __init__(
        self, clock: Callable[[], float], row_ids: Iterable[int] = (), snapshot_seq: int = 0
    ) -> None:
        self._clock = clock
        self.row_ids: set[int] = set(row_ids)
        self.snapshot_seq = snapshot_seq
        self.updates_since_compaction = 0
        self.dirty_since: float | None = None
        self.last_edit_at: float | None = None
        self._unconfirmed: set[asyncio.Future[int | None]] = set()  # appends in flight

    @property
    def is_dirty(self) -> bool:
        return self.updates_since_compaction > 0

    def is_compaction_due(self, now: float, after_updates: int, after_s: float) -> bool:
        if not self.is_dirty or self.dirty_since is None:
            return False
        return self.updates_since_compaction >= after_updates or now - self.dirty_since >= after_s

    def is_quiet_for(self, now: float, quiet_s: float) -> bool:
        """Dirty, and no edit made here for `quiet_s` (a burst of editing ended)."""
        return (
            quiet_s > 0
            and self.is_dirty
            and self.last_edit_at is not None
            and now - self.last_edit_at >= quiet_s
        )

    def note_edit(self, write: asyncio.Future[int | None]) -> None:
        """A change made here was submitted for storage (its row id comes later)."""
        self.last_edit_at = self._clock()
        self.updates_since_compaction += 1
        if self.dirty_since is None:
            self.dirty_since = self._clock()
        self._unconfirmed.add(write)

    def note_committed(self, write: asyncio.Future[int | None]) -> int | None:
        """The write's outcome: its row id once committed (None if it failed)."""
        self._unconfirmed.discard(write)
        if write.cancelled() or write.exception() is not None:
            return None
        row_id = write.result()
        assert row_id is not None  # an AppendUpdate resolves to its row id
        self.row_ids.add(row_id)
        return row_id

    def capture(self, state: bytes, preview: str | None = None) -> SnapshotCapture:
        """`state` (the Doc now) with the rows it holds; restarts the compaction clock."""
        self.updates_since_compaction = 0
        self.dirty_since = None
        row_ids = tuple(self.row_ids)
        self.row_ids.clear()
        return SnapshotCapture(state, row_ids, self.snapshot_seq, tuple(self._unconfirmed), preview)

    async def settle(self, capture: SnapshotCapture) -> SnapshotCapture:
        """Wait until the captured changes still in flight are committed, so the
        snapshot deletes their rows too (else they wait for the next one)."""
        if not capture.pending:
            return capture
        await asyncio.wait(capture.pending)
        ids = [
            row_id
            for write in capture.pending
            if not write.cancelled() and write.exception() is None
            if (row_id := write.result()) is not None
        ]
        self.row_ids.difference_update(ids)  # `note_committed` listed them
        return SnapshotCapture(
            capture.state, capture.row_ids + tuple(ids), capture.base_seq, preview=capture.preview
        )

    def after_snapshot(self, capture: SnapshotCapture, write: asyncio.Future[int | None]) -> None:
        if write.cancelled() or write.exception() is not None:
            # The state stays in memory and the log keeps its rows: a later
            # snapshot deletes them.
            self.row_ids.update(capture.row_ids)
            self.updates_since_compaction = max(self.updates_since_compaction, 1)
            if self.dirty_since is None:
                self.dirty_since = self._clock()
            return
        self.snapshot_seq = max(self.snapshot_seq, capture.base_seq + 1)

    def note_loaded(self, row_ids: Iterable[int], snapshot_seq: int) -> None:
        """The Doc now holds these stored rows and the snapshot they came with."""
        self.row_ids.update(row_ids)
        self.snapshot_seq = max(self.snapshot_seq, snapshot_seq)
