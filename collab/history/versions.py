"""Version history: list, save, show, compare and restore a document's snapshots.

Owns the rules that make versions safe with live editors:
- every version operation goes through the document's live room (loading it if
  nobody is connected), so snapshots are ordered with the updates around them;
- a restore first saves a `pre-restore` version, then applies the difference
  between now and the chosen version as new operations (collab.history.restore), which
  are stored and relayed like any client's edit, so connected editors converge
  instead of merging the old state back;
- diffs and restores are computed in a compute worker (collab.history.workers),
  never on the event loop: a diff is refused (429) when every worker is busy and
  (413) beyond `diff_max_bytes`; a restore waits its turn, one per document at a
  time, and its result is applied to the live Doc on the event loop;
- retention thinning runs in its own task through the writer, never inside a
  client's request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from collab.errors import CollabError, DocumentNotFound
from collab.history.activity import DocumentActivity, microseconds
from collab.history.compare import diff_body
from collab.history.restore import (
    RestoreConflict,
    apply_restore,
    holds_history_of,
    restore_update,
)
from collab.history.retention import RetentionPolicy, select_for_deletion
from collab.history.workers import ComputePool
from collab.rooms.registry import RoomRegistry
from collab.storage.attribution import SERVER_AUTHOR, Author
from collab.storage.store import (
    DeleteSnapshots,
    DocumentStore,
    Snapshot,
    SnapshotInfo,
    SnapshotKind,
)
from collab.storage.writer import UpdateWriter

logger = logging.getLogger(__name__)

_MAX_VERSIONS_SCANNED = 10_000


class SnapshotNotFound(CollabError):
    """No snapshot with that id belongs to that document."""


class VersionTooLarge(CollabError):
    """A version (or the current content) is beyond what a diff may compare."""


@dataclass(slots=True)
class _Turns:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


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
        compute: ComputePool | None = None,
        diff_max_bytes: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        # Where diffs and restores are computed; the runtime closes it.
        self.compute = compute or ComputePool(1)
        self._diff_max_bytes = diff_max_bytes  # 0: no limit
        self._restore_turns: dict[str, _Turns] = {}
        self._store = store
        self._registry = registry
        self._writer = writer
        self._retention = retention
        self._clock = clock
        # The timeline and blame (attribution's read side) share the workers.
        self.activity = DocumentActivity(
            store, registry, self.compute, one_at_a_time=self._one_restore_at_a_time
        )

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

    async def diff(self, name: str, snapshot_id: int, against: int | Literal["current"]) -> bytes:
        """The diff's response body (JSON, see collab.history.compare), computed in
        a compute worker. Raises `ComputeBusy` when every slot is taken (nothing
        waits for one) and `VersionTooLarge` past `diff_max_bytes`."""
        with self.compute.take_slot() as slot:
            old_state = (await self.get_version(name, snapshot_id)).state
            if against == "current":
                new_state = await self._registry.read_state(name)
                if new_state is None:
                    raise DocumentNotFound(name)
            else:
                new_state = (await self.get_version(name, against)).state
            attribution = await self.activity.attribution_of(name)
            largest = max(len(old_state), len(new_state))
            if self._diff_max_bytes and largest > self._diff_max_bytes:
                raise VersionTooLarge(
                    f"a version of {largest} bytes is beyond the {self._diff_max_bytes} bytes "
                    "a diff may compare (COLLAB_DIFF_MAX_BYTES)"
                )
            return await self.compute.run(
                slot,
                len(old_state) + len(new_state),
                diff_body,
                name,
                snapshot_id,
                against,
                old_state,
                new_state,
                attribution,
            )

    async def resolve_version(self, name: str, spec: str) -> int | Literal["current"]:
        """A version id, "current", or a time (ISO 8601 or Unix seconds): the
        newest version whose content was captured at or before it."""
        if spec == "current" or spec.isdigit():
            return "current" if spec == "current" else int(spec)
        try:
            when = float(spec)
        except ValueError:
            try:
                when = datetime.fromisoformat(spec.replace("Z", "+00:00")).timestamp()
            except ValueError as exc:
                raise SnapshotNotFound(f"{spec!r} is not a version id or a time") from exc
        versions = await self.list_versions(name, limit=_MAX_VERSIONS_SCANNED)
        for version in versions:  # newest first; times travel to the microsecond
            if microseconds(version.updated_at) <= microseconds(when):
                return version.id
        raise SnapshotNotFound(f"document {name!r} has no version from before {spec}")

    async def restore(
        self,
        name: str,
        snapshot_id: int,
        *,
        actor: str | None = None,
        author: Author | None = None,
    ) -> RestoreResult:
        """`actor`: who restores; the pre-restore version records them as its
        author. `author`: whom the restore's edits are attributed to (None: the
        server)."""
        target = await self.get_version(name, snapshot_id)
        async with self._one_restore_at_a_time(name):
            room = await self._registry.open_room(name)
            current = room.doc.get_update()
            # Computed off the event loop; edits may arrive meanwhile, and merge
            # with the restore's operations as with any concurrent edit. Restores
            # of one document take turns: two computed against the same state
            # would both apply.
            with await self.compute.wait_for_slot() as slot:
                update = await self.compute.run(
                    slot, len(current) + len(target.state), restore_update, current, target.state
                )
            # The room may have been unloaded (and loaded again) meanwhile.
            room = await self._registry.open_room(name)
            if not holds_history_of(room.doc.get_state(), current):
                raise RestoreConflict(
                    f"document {name!r} was deleted while the restore was computed"
                )
            # Synchronous from the capture to the end of the restore: the pre-restore
            # version is exactly the state the restore's operations are applied to.
            before = room.capture()  # also submits earlier edits: they keep their own row
            if update is not None:
                with room.edits_by(author or SERVER_AUTHOR, "restore", snapshot_id):
                    apply_restore(room.doc, update)  # stored and relayed as any edit
            write = room.submit_edits()
            pre_restore_id = await self._registry.compactor.snapshot(
                room,
                SnapshotKind.PRE_RESTORE,
                label=f"before restoring version {snapshot_id}",
                author=actor,
                capture=before,
                restored_id=snapshot_id,
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

    @contextlib.asynccontextmanager
    async def _one_restore_at_a_time(self, name: str) -> AsyncIterator[None]:
        turns = self._restore_turns.setdefault(name, _Turns())
        turns.users += 1
        try:
            async with turns.lock:
                yield
        finally:
            turns.users -= 1
            if not turns.users:
                del self._restore_turns[name]

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
