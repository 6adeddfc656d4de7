"""Version history: list, save, show, compare and restore a document's snapshots.

Owns the rules that make versions safe with live editors:
- every version operation goes through the document's live room (loading it if
  nobody is connected), so snapshots are ordered with the updates around them;
- a restore first saves a `pre-restore` version, then applies the difference
  between now and the chosen version as new operations (collab.history.restore), which
  are stored and relayed like any client's edit, so connected editors converge
  instead of merging the old state back;
- retention thinning runs in its own task through the writer, never inside a
  client's request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from collab.content import render_content
from collab.errors import CollabError, DocumentNotFound
from collab.history.restore import restore_doc
from collab.history.retention import RetentionPolicy, select_for_deletion
from collab.history.textdiff import Hunk, diff_text
from collab.rooms.registry import RoomRegistry
from collab.storage.store import (
    DeleteSnapshots,
    DocumentStore,
    Snapshot,
    SnapshotInfo,
    SnapshotKind,
)
from collab.storage.writer import UpdateWriter

logger = logging.getLogger(__name__)


class SnapshotNotFound(CollabError):
    """No snapshot with that id belongs to that document."""


@dataclass(frozen=True, slots=True)
class TextRootDiff:
    root: str
    hunks: list[Hunk]

    @property
    def inserted_chars(self) -> int:
        return sum(len(h.text) for h in self.hunks if h.op == "insert")

    @property
    def deleted_chars(self) -> int:
        return sum(len(h.text) for h in self.hunks if h.op == "delete")


@dataclass(frozen=True, slots=True)
class VersionDiff:
    text_roots: list[TextRootDiff]
    other_changed_roots: list[str]  # maps and arrays whose content differs


@dataclass(frozen=True, slots=True)
class RestoreResult:
    pre_restore_id: int
    changed: bool


class VersionHistory:
    def __init__(
        self,
        store: DocumentStore,
        registry: RoomRegistry,
        writer: UpdateWriter,
        retention: RetentionPolicy,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._registry = registry
        self._writer = writer
        self._retention = retention
        self._clock = clock

    async def list_versions(
        self, name: str, *, limit: int, before_id: int | None = None
    ) -> list[SnapshotInfo]:
        versions = await self._store.list_snapshots(name, limit=limit, before_id=before_id)
        if not versions and before_id is None and not await self._registry.exists(name):
            raise DocumentNotFound(name)
        return versions

    async def get_version(self, name: str, snapshot_id: int) -> Snapshot:
        snapshot = await self._store.get_snapshot(name, snapshot_id)
        if snapshot is None:
            if not await self._registry.exists(name):
                raise DocumentNotFound(name)
            raise SnapshotNotFound(f"document {name!r} has no snapshot {snapshot_id}")
        return snapshot

    async def save_version(
        self, name: str, *, label: str, author: str | None = None
    ) -> SnapshotInfo:
        room = await self._registry.open_room(name)
        snapshot_id = await self._registry.compactor.snapshot(
            room, SnapshotKind.NAMED, label=label, author=author
        )
        assert snapshot_id is not None
        return (await self.get_version(name, snapshot_id)).info

    async def diff(
        self, name: str, snapshot_id: int, against: int | Literal["current"]
    ) -> VersionDiff:
        old_state = (await self.get_version(name, snapshot_id)).state
        if against == "current":
            new_state = await self._registry.read_state(name)
            if new_state is None:
                raise DocumentNotFound(name)
        else:
            new_state = (await self.get_version(name, against)).state
        old, new = await asyncio.gather(
            asyncio.to_thread(render_content, old_state),
            asyncio.to_thread(render_content, new_state),
        )
        return await asyncio.to_thread(_compare, old, new)

    async def restore(
        self, name: str, snapshot_id: int, *, actor: str | None = None
    ) -> RestoreResult:
        """`actor`: who restores; the pre-restore version records them as its author."""
        target = await self.get_version(name, snapshot_id)
        room = await self._registry.open_room(name)
        # Synchronous from the capture to the end of the restore: no edit can slip
        # between the pre-restore version and the operations computed against it.
        before = room.capture()  # also submits earlier edits: they keep their own row
        restore_doc(room.doc, target.state)  # one transaction, stored and relayed as any edit
        write = room.submit_edits()
        pre_restore_id = await self._registry.compactor.snapshot(
            room,
            SnapshotKind.PRE_RESTORE,
            label=f"before restoring version {snapshot_id}",
            author=actor,
            capture=before,
        )
        if write is not None:
            await write  # durable before we say it is done
        assert pre_restore_id is not None
        logger.info(
            "doc=%s restored version %d by %s (pre-restore version %d, changed: %s)",
            name,
            snapshot_id,
            actor or "-",
            pre_restore_id,
            write is not None,
        )
        return RestoreResult(pre_restore_id=pre_restore_id, changed=write is not None)

    # -- retention -----------------------------------------------------------

    async def run_retention(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.thin_versions()
            except Exception:  # task boundary: try again next interval
                logger.exception("retention pass failed")

    async def thin_versions(self) -> int:
        """One retention pass over every document; returns how many versions went."""
        now = self._clock()
        removed = 0
        for name in await self._store.documents_with_snapshots(SnapshotKind.AUTO):
            versions = await self._store.list_snapshots(name)
            doomed = select_for_deletion(versions, now, self._retention)
            if doomed:
                await self._writer.submit(DeleteSnapshots(name, tuple(doomed)))
                removed += len(doomed)
                logger.info("doc=%s retention removed %d automatic versions", name, len(doomed))
        return removed


def _compare(old: dict[str, Any], new: dict[str, Any]) -> VersionDiff:
    text_roots = []
    other_changed = []
    for root in sorted(old.keys() | new.keys()):
        before, after = old.get(root, ""), new.get(root, "")
        if isinstance(before, str) and isinstance(after, str):
            text_roots.append(TextRootDiff(root, diff_text(before, after)))
        elif before != after:
            other_changed.append(root)
    return VersionDiff(text_roots, other_changed)
