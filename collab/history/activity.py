"""A document's timeline and blame, read from what attribution stored.

Owns the read side of attribution: the activity (editing sessions, and versions
and restores as events, newest first, paged by time) and blame (computed in a
compute worker by collab.history.blame from the durable state). Reads only:
what is written, and when, is the rooms' business (collab.rooms.authorship).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from collab.errors import CollabError, DocumentNotFound
from collab.history.blame import blame_body
from collab.history.restore import RestoreConflict, holds_history_of
from collab.history.revert import revert_update
from collab.history.workers import ComputePool
from collab.rooms.registry import RoomRegistry
from collab.storage.attribution import Author, EditSession
from collab.storage.store import DocumentStore, Snapshot, SnapshotInfo, SnapshotKind

logger = logging.getLogger(__name__)

_EPOCH = datetime.fromtimestamp(0, UTC)
_MICROSECOND = timedelta(microseconds=1)


class NothingToRevert(CollabError):
    """No session of that author (or with that id) in that window."""


@dataclass(frozen=True, slots=True)
class RevertResult:
    pre_revert_id: int
    sessions: int  # how many sessions were undone
    changed: bool
    restored_chars: int = 0  # characters of deleted text brought back
    deletions_missing: str | None = None  # why some deleted text did not come back
    source_version: int | None = None  # the version the deleted text was read from


@dataclass(frozen=True, slots=True)
class ActivityEvent:
    """One entry of the timeline: a session, or a version (a restore's
    pre-restore version is how a restore shows)."""

    at: float  # when it ended (a session) or was made (a version)
    session: EditSession | None = None
    version: SnapshotInfo | None = None


@dataclass(frozen=True, slots=True)
class ActivityQuery:
    since: float | None = None
    until: float | None = None
    author: str | None = None  # a subject
    limit: int = 50
    before: float | None = None  # paging: only events strictly older


class DocumentActivity:
    def __init__(
        self,
        store: DocumentStore,
        registry: RoomRegistry,
        compute: ComputePool,
        *,
        one_at_a_time: Callable[[str], AbstractAsyncContextManager[None]],
    ) -> None:
        self._store = store
        self._registry = registry
        self._compute = compute
        # Restores and reverts of one document take turns: two computed against
        # the same state would both apply.
        self._one_at_a_time = one_at_a_time

    async def activity(self, name: str, query: ActivityQuery) -> list[ActivityEvent]:
        """Newest first, at most `query.limit` (one more tells there is a next page)."""
        until = query.until
        if query.before is not None:
            until = query.before if until is None else min(until, query.before)
        sessions = await self._store.list_sessions(
            name, since=query.since, until=until, subject=query.author, limit=query.limit + 1
        )
        events = [ActivityEvent(s.ended_at, session=s) for s in sessions]
        for version in await self._store.list_snapshots(name):
            if query.author is not None and version.author != query.author:
                continue
            if version.kind is SnapshotKind.AUTO and query.author is not None:
                continue
            at = version.created_at
            if (query.since is None or at >= query.since) and (until is None or at <= until):
                events.append(ActivityEvent(at, version=version))
        if query.before is not None:
            # Times travel as ISO 8601 to the microsecond: compare at that grain.
            cursor = microseconds(query.before)
            events = [e for e in events if microseconds(e.at) < cursor]
        if not events and not await self._registry.exists(name):
            raise DocumentNotFound(name)
        events.sort(key=lambda e: e.at, reverse=True)
        return events[: query.limit + 1]

    async def blame(self, name: str) -> dict[str, list[dict[str, Any]]]:
        """Every text root's current content as runs {text, author, name,
        verified, at}. Raises `ComputeBusy` if every compute slot is taken."""
        with self._compute.take_slot() as slot:
            state = await self._registry.read_state(name)
            if state is None:
                raise DocumentNotFound(name)
            sessions, owners, sources = await self.attribution_of(name)
            size = len(state) + sum(map(len, sources.values()))
            return await self._compute.run(slot, size, blame_body, state, sessions, owners, sources)

    async def attribution_of(
        self, name: str
    ) -> tuple[list[EditSession], dict[int, str], dict[int, bytes]]:
        """What blame needs besides a state: the sessions, the client ids'
        owners, and the states of the versions restores restored (those that
        retention kept)."""
        sessions = await self._store.list_sessions(name)
        owners = await self._store.load_owners(name)
        sources: dict[int, bytes] = {}
        for version in {s.source_version for s in sessions if s.source_version is not None}:
            snapshot = await self._store.get_snapshot(name, version)
            if snapshot is not None:
                sources[version] = snapshot.state
        return sessions, owners, sources

    async def revert(
        self,
        name: str,
        *,
        actor: Author,
        author: str | None = None,
        session: int | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> RevertResult:
        """Undo what `author` (a subject) did in [since, until], or what session
        `session` did: their text still present is deleted, exactly (by its
        clock ranges), and the text they deleted comes back, read from the
        newest version from before their first session (collab.history.revert),
        as new operations attributed to `actor`, after a pre-restore version of
        the content before. Others' edits, made before or since, stay. Raises
        `NothingToRevert` if no such session exists, `RestoreConflict` if the
        document was deleted meanwhile."""
        sessions = [
            s
            for s in await self._store.list_sessions(name, since=since, until=until, subject=author)
            if (session is None or s.key == session) and s.origin == "edit"
        ]
        if not sessions:
            if not await self._registry.exists(name):
                raise DocumentNotFound(name)
            raise NothingToRevert(f"document {name!r}: no such editing session to revert")
        inserted = [r for s in sessions for r in s.ranges]
        deleted = [r for s in sessions for r in s.deleted_ranges]
        # From before the first deletion: what others wrote until then is in it.
        deleting = [s for s in sessions if s.deleted_ranges] or sessions
        source = await self._version_before(name, min(s.started_at for s in deleting))
        unrecorded = sum(s.deleted for s in sessions if not s.deleted_ranges)
        what = author or f"session {session}"
        async with self._one_at_a_time(name):
            room = await self._registry.open_room(name)
            current = room.doc.get_update()
            before_state = None if source is None else source.state
            size = len(current) + len(before_state or b"")
            with await self._compute.wait_for_slot() as slot:
                plan = await self._compute.run(
                    slot, size, revert_update, current, inserted, deleted, before_state
                )
            room = await self._registry.open_room(name)  # it may have been reloaded
            if not holds_history_of(room.doc.get_state(), current):
                raise RestoreConflict(
                    f"document {name!r} was deleted while the revert was computed"
                )
            before = room.capture()  # synchronous to the apply: the exact content before
            if plan.update is not None:
                source_id = None if source is None or not plan.restored_chars else source.info.id
                with room.edits_by(actor, "revert", source_id):
                    room.doc.apply_update(plan.update)
            write = room.submit_edits()
            pre_revert_id = await self._registry.compactor.snapshot(
                room,
                SnapshotKind.PRE_RESTORE,
                label=f"before reverting {what}",
                author=actor.subject,
                capture=before,
            )
        if write is not None:
            await write  # durable before we say it is done
        missing = plan.missing
        if unrecorded:
            missing = "deletions made before this server recorded them (by id) are not known"
        logger.info(
            "doc=%s reverted %d sessions of %s by %s (pre-revert version %d, %d characters back)",
            name,
            len(sessions),
            what,
            actor.subject,
            pre_revert_id,
            plan.restored_chars,
        )
        return RevertResult(
            pre_revert_id,
            len(sessions),
            write is not None,
            restored_chars=plan.restored_chars,
            deletions_missing=missing,
            source_version=None if source is None else source.info.id,
        )

    async def _version_before(self, name: str, at: float) -> Snapshot | None:
        """The newest version whose content was captured at or before `at`."""
        for version in await self._store.list_snapshots(name):  # newest first
            if microseconds(version.updated_at) <= microseconds(at):
                return await self._store.get_snapshot(name, version.id)
        return None


def microseconds(seconds: float) -> int:
    """`seconds` at the grain of the ISO 8601 times the API gives, rounded exactly
    as `datetime.fromtimestamp` rounds them (float arithmetic may round the other
    way, and a page's last event would come back on the next page)."""
    return (datetime.fromtimestamp(seconds, UTC) - _EPOCH) // _MICROSECOND
