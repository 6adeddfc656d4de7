"""The storage seam: what the rooms need from a database, as a small Protocol.

Owns the write operations (`AppendUpdate`, `SaveSnapshot`, `DeleteDocument`) and
the records read back. `SqlStore` satisfies `DocumentStore`; another backend
only has to provide the same methods with the same transaction guarantees:

- `commit(ops)` applies every op in order in ONE transaction: all or nothing,
  except that an op the store declines for what it is (`OpDeclined`: a stale
  or contended snapshot) is skipped and reported while the others commit.
- `commit` makes ONE attempt and never retries (retrying is the writer's job,
  collab.storage.writer); it says why an attempt failed by what it raises:
  `PermanentWriteError` (an op the database refuses for what it is),
  `WriteContention` (another process's transaction collided with this one:
  nothing was written, running it again at once is expected to work); anything
  else is an outage that may pass.
- `commit` returns one result per op: the new row's id for `AppendUpdate` (the
  log's sequence number), the snapshot id for `SaveSnapshot`, else None; or the
  `OpDeclined` instance for a declined op.
- `SaveSnapshot` deletes exactly the log rows it names (those whose content the
  saving room has applied), so rows committed by another process that this room
  has not seen yet survive. It is refused (`SnapshotConflict`) unless it was
  built on the document's current snapshot sequence, so the newest snapshot
  always contains every snapshot before it; and at most one compactor per
  document works at a time (`CompactionBusy`).
- Only an append creates a document's row; nothing else does (a snapshot, a
  deletion, quarantine or retention of a document with no row changes nothing).
- A document has an incarnation: how many times its name had been deleted when
  its row was created. An op that names one (`AppendUpdate.incarnation`,
  `SaveSnapshot.incarnation`, from the room that loaded it) is declined with
  `DocumentDeleted` unless the document's row exists at that incarnation, checked
  in the transaction that writes it, under a lock that a concurrent deletion
  must wait for (or that waits for it). So a room that outlived a deletion -
  on this process or another one, at the same instant - can neither bring the
  document back nor write into the next one of that name.
- Every op that changes what a document is records its event in the same
  transaction (collab.storage.events): `document.created` with the row,
  `version.saved` with a named version, `document.restored` with a pre-restore
  version, `document.deleted` with the deletion; appends only bring the
  document's pending change up to date, which becomes `document.updated` once
  editing goes quiet (or before any other event of that document).
- `load` returns the latest snapshot, the document's snapshot sequence and
  incarnation, and EVERY log row still present (applying a row a snapshot
  already contains is harmless: Yjs updates are idempotent).
- Errors are classified the same for every driver: `PermanentWriteError` for
  a constraint or data error (the op itself), `WriteContention` for a deadlock
  or serialization failure, and anything else - a lost connection, a locked
  database, a missing table, a revoked privilege - is an outage that an
  operator or time can cure: nothing about the op is wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from collab.storage.attribution import ClientClaim, EditSession


@dataclass(frozen=True, slots=True)
class AppendUpdate:
    """One log row. `incarnation`: the document's incarnation the update was made
    in (see `DocumentStore`); None skips the check (a single process only: tools
    and tests). `claims` and `sessions`: its attribution (collab.storage.attribution),
    written in the same transaction, and only if the row is. `author`: who made it,
    if known (the subject the `document.updated` event names)."""

    document: str
    update: bytes
    incarnation: int | None = None
    claims: tuple[ClientClaim, ...] = ()
    sessions: tuple[EditSession, ...] = ()
    author: str | None = None


class SnapshotKind(StrEnum):
    AUTO = "auto"  # written by compaction
    NAMED = "named"  # saved by a user, with a label
    PRE_RESTORE = "pre-restore"  # the state just before a restore, so it can be undone


@dataclass(frozen=True, slots=True)
class SaveSnapshot:
    """The full state of a document; replaces the log rows it contains.

    `row_ids`: the log rows to delete, all contained in `state`. None means
    every row now in the log - right only for a single process that has applied
    them all (tools and tests); rooms always name their rows.

    `base_seq`: the document's snapshot sequence this state was built on (the
    state contains that snapshot). The store refuses the snapshot with
    `SnapshotConflict` if another snapshot was written since; None skips the
    check (a single process only).

    `merge_window_s` (auto snapshots only): if the document's newest snapshot is
    an auto one opened less than this long ago, its state is replaced instead of
    adding a version, so automatic versions are at most one per window.

    `incarnation`: the document's incarnation the state belongs to; None skips
    the check. A snapshot never creates the document: of a document with no row
    (deleted, or never written) it is declined with `DocumentDeleted`.

    `restored_id` (pre-restore versions only): the version being restored; the
    snapshot's transaction records the `document.restored` event.
    """

    document: str
    state: bytes
    preview: str = ""
    kind: SnapshotKind = SnapshotKind.AUTO
    label: str | None = None
    author: str | None = None
    merge_window_s: float = 0.0
    row_ids: tuple[int, ...] | None = None
    base_seq: int | None = None
    incarnation: int | None = None
    restored_id: int | None = None


@dataclass(frozen=True, slots=True)
class DeleteSnapshots:
    """Retention: drop these versions (never the newest, which loading needs)."""

    document: str
    ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DeleteDocument:
    """Remove everything of `document`, leaving a tombstone: the state vector of
    what was deleted, so that a client still holding that history cannot bring it
    back by reconnecting (see `StoredDocument.tombstone`), and the count of
    deletions, which is the incarnation of the next document of that name."""

    document: str
    tombstone: bytes = b"\x00"


@dataclass(frozen=True, slots=True)
class QuarantineRows:
    """Move stored rows that do not decode out of the document, keeping their
    bytes (for inspection or repair) in the quarantine table."""

    document: str
    reason: str
    snapshot_ids: tuple[int, ...] = ()
    row_ids: tuple[int, ...] = ()


WriteOp = AppendUpdate | SaveSnapshot | DeleteSnapshots | DeleteDocument | QuarantineRows


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    id: int
    document: str
    created_at: float  # Unix seconds: when this version was first written
    updated_at: float  # when its state was last captured (auto versions absorb compactions)
    kind: SnapshotKind
    label: str | None
    author: str | None
    size_bytes: int
    preview: str


@dataclass(frozen=True, slots=True)
class Snapshot:
    info: SnapshotInfo
    state: bytes


@dataclass(frozen=True, slots=True)
class ServerLease:
    """A running server announces itself so offline tools never write behind its back."""

    id: str
    url: str
    pid: int
    hostname: str
    started_at: float
    heartbeat_at: float
    ttl_s: float  # the lease is live while heartbeat_at + ttl_s is in the future
    # The Redis key prefix of the cluster this server coordinates through; None
    # for a server on its own (which must be the only one on its database).
    cluster: str | None = None


@dataclass(frozen=True, slots=True)
class RevocationRecord:
    """A revoked token as stored (collab.auth.revocation.Revocation is what it means):
    `kind` "jti" or "subject", `until` None for good. Written directly, not through
    the writer: a rare administrative act, like a lease."""

    kind: str
    value: str
    revoked_at: float
    until: float | None = None
    reason: str | None = None
    revoked_by: str | None = None


class PermanentWriteError(Exception):
    """The database refused an op for what it is (not for being unavailable):
    retrying it would block every write behind it forever."""


class WriteContention(Exception):
    """The database aborted the transaction because it collided with another
    process's (a deadlock or a serialization failure): nothing was written, and
    the batch may run again at once - this is contention, not an outage."""


class OpDeclined(Exception):
    """The store skipped this op and committed the rest of its transaction; the
    op's future fails with it. Nothing is lost: the caller still holds the data."""


class SnapshotConflict(OpDeclined):
    """Another snapshot of the document was written since the one this state was
    built on: saving it would drop what that snapshot holds. Catch up, retry."""

    def __init__(self, document: str, base_seq: int, current_seq: int) -> None:
        super().__init__(
            f"doc={document}: snapshot built on sequence {base_seq}, current is {current_seq}"
        )
        self.current_seq = current_seq


class CompactionBusy(OpDeclined):
    """Another process is writing a snapshot of the document right now."""


class DocumentDeleted(OpDeclined):
    """The op was made for an incarnation of the document that is gone: its row
    was deleted (here or by another process), or belongs to a later document of
    the same name. Writing it would bring deleted content back."""

    def __init__(self, document: str, incarnation: int | None, current: int | None) -> None:
        now = "no document" if current is None else f"incarnation {current}"
        super().__init__(f"doc={document}: written for incarnation {incarnation}, found {now}")
        self.document = document


@dataclass(frozen=True, slots=True)
class StoredDocument:
    """What loading a document needs: latest snapshot state, then every log row
    still present (with their row ids: to quarantine a row that does not decode,
    and for the next snapshot to delete), the snapshot sequence that state is at,
    and the state vector of any earlier incarnation that was deleted (its
    tombstone)."""

    snapshot: bytes | None
    updates: list[bytes] = field(default_factory=list)
    snapshot_id: int | None = None
    row_ids: list[int] = field(default_factory=list)
    tombstone: bytes | None = None
    snapshot_seq: int = 0
    # The incarnation of the document (its row's, or for a document with no row
    # the one its next row will have): what the room's writes carry.
    incarnation: int = 0
    # client id -> the subject that owns it (collab.storage.attribution)
    owners: dict[int, str] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return self.snapshot is None and not self.updates


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    name: str
    created_at: float  # Unix seconds
    updated_at: float
    size_bytes: int  # latest snapshot plus the log entries after it
    log_entries: int
    snapshots: int


class DocumentStore(Protocol):
    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def commit(self, ops: Sequence[WriteOp]) -> list[int | OpDeclined | None]: ...

    async def load(self, document: str) -> StoredDocument: ...

    async def document_info(self, document: str) -> DocumentInfo | None: ...

    async def list_documents(self) -> list[DocumentInfo]: ...

    async def ping(self) -> None: ...

    async def list_snapshots(
        self, document: str, *, limit: int | None = None, before_id: int | None = None
    ) -> list[SnapshotInfo]: ...

    async def get_snapshot(self, document: str, snapshot_id: int) -> Snapshot | None: ...

    async def list_sessions(
        self,
        document: str,
        *,
        since: float | None = None,
        until: float | None = None,
        subject: str | None = None,
        limit: int | None = None,
    ) -> list[EditSession]:
        """The document's editing sessions overlapping [since, until], newest
        (by end) first."""
        ...

    async def load_owners(self, document: str) -> dict[int, str]:
        """Client id -> the subject that owns it."""
        ...

    async def documents_with_snapshots(self, kind: SnapshotKind) -> list[str]: ...

    async def save_lease(self, lease: ServerLease) -> None: ...

    async def drop_lease(self, lease_id: str) -> None: ...

    async def live_leases(self) -> list[ServerLease]: ...

    async def add_revocation(self, revocation: RevocationRecord) -> None:
        """Store it durably (and drop the revocations that have lapsed)."""
        ...

    async def list_revocations(self) -> list[RevocationRecord]:
        """Every revocation still in force, oldest first."""
        ...
