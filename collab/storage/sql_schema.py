"""The database schema as the code expects it (SQLite and PostgreSQL alike):

    documents(name PK, created_at, updated_at, snapshot_seq, incarnation)
    updates(id, document, data, created_at)          -- the append-only log
    snapshots(id, document, created_at, updated_at, kind, label, author,
              size_bytes, preview, state)
    server_leases(id, url, pid, hostname, started_at, heartbeat_at, ttl_s, cluster)
    tombstones(name PK, state_vector, deleted_at, deletions)  -- what deleted documents held
    quarantine(id, document, source, source_id, data, reason, quarantined_at)
    token_revocations(id, kind, value, revoked_at, until, reason, revoked_by)
    client_authors(document, client_id, subject, claimed_at)   -- who owns a client id
    edit_sessions(id, document, key, subject, name, is_verified, origin,
                  started_at, ended_at, inserted, deleted, ranges, source_version,
                  deleted_ranges, roots)
    events(id, seq, document, type, occurred_at, data)   -- the outbox and the feed
    event_counter(id PK, last_seq)
    pending_changes(document PK, first_at, last_at, first_row, last_row, author)
    webhook_subscriptions(id, url, secret, source, created_at)
    webhook_deliveries(subscription_id, event_seq, document, status, attempts,
                       next_attempt_at, claimed_by, claimed_until, last_attempt_at, last_error)

Databases get there through the Alembic migrations in collab/storage/migrations
(run at start-up); a change here needs a migration there, and
tests/integration/test_migrations.py checks that the two agree.

`updates.id` is the log's sequence number: strictly increasing and never reused
(SQLite AUTOINCREMENT, a PostgreSQL identity). A snapshot deletes exactly the
rows it contains, so the log after compaction is "every row still present".
`documents.snapshot_seq` counts the document's snapshot writes: a snapshot must
be built on the current value (compare-and-set), so the newest snapshot always
contains every earlier one even when several processes compact.
`documents.incarnation` is `tombstones.deletions` (0 without a tombstone) when
the row was created: a write made for an earlier incarnation is refused in its
own transaction (see collab.storage.sql_writes).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from collab.storage.store import SnapshotInfo, SnapshotKind

_Id = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

documents = Table(
    "documents",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("snapshot_seq", BigInteger, nullable=False, server_default="0"),
    Column("incarnation", BigInteger, nullable=False, server_default="0"),
)


def _per_document_columns() -> list[Column[Any]]:
    """A never-reused id, and the document the row belongs to (deleted with it)."""
    return [
        Column("id", _Id, primary_key=True, autoincrement=True),
        Column(
            "document",
            String(128),
            ForeignKey("documents.name", ondelete="CASCADE"),
            nullable=False,
        ),
    ]


updates = Table(
    "updates",
    metadata,
    *_per_document_columns(),
    Column("data", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_updates_document_id", "document", "id"),
    sqlite_autoincrement=True,
)

snapshots = Table(
    "snapshots",
    metadata,
    *_per_document_columns(),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("label", Text),
    Column("author", Text),
    Column("size_bytes", BigInteger, nullable=False),
    Column("preview", Text, nullable=False),
    Column("state", LargeBinary, nullable=False),
    Index("ix_snapshots_document_id", "document", "id"),
    sqlite_autoincrement=True,
)

server_leases = Table(
    "server_leases",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("url", Text, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("hostname", Text, nullable=False),
    Column("started_at", Float, nullable=False),
    Column("heartbeat_at", Float, nullable=False),
    Column("ttl_s", Float, nullable=False),
    Column("cluster", Text),  # the Redis key prefix; NULL: a server on its own
)

tombstones = Table(
    "tombstones",
    metadata,
    Column("name", String(128), primary_key=True),
    Column("state_vector", LargeBinary, nullable=False),
    Column("deleted_at", Float, nullable=False),
    Column("deletions", BigInteger, nullable=False, server_default="1"),
)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("document", String(128), nullable=False, index=True),
    Column("source", String(16), nullable=False),  # "updates" or "snapshots"
    Column("source_id", BigInteger, nullable=False),
    Column("data", LargeBinary, nullable=False),
    Column("reason", Text, nullable=False),
    Column("quarantined_at", Float, nullable=False),
    sqlite_autoincrement=True,
)

# Tokens an administrator revoked before their `exp` (collab.auth.revocation):
# by `jti` or by subject, until `until` (NULL: for good). Rows are only added,
# and deleted once lapsed.
token_revocations = Table(
    "token_revocations",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # "jti" or "subject"
    Column("value", Text, nullable=False),
    Column("revoked_at", Float, nullable=False),
    Column("until", Float),
    Column("reason", Text),
    Column("revoked_by", Text),
    sqlite_autoincrement=True,
)

# Attribution (collab.storage.attribution): written in the transaction of the
# log rows they describe; compaction and retention never touch them.
client_authors = Table(
    "client_authors",
    metadata,
    Column(
        "document",
        String(128),
        ForeignKey("documents.name", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("client_id", BigInteger, primary_key=True, autoincrement=False),
    Column("subject", Text, nullable=False),
    Column("claimed_at", Float, nullable=False),
)

edit_sessions = Table(
    "edit_sessions",
    metadata,
    *_per_document_columns(),
    Column("key", BigInteger, nullable=False),
    Column("subject", Text, nullable=False),
    Column("name", Text),
    Column("is_verified", Boolean, nullable=False),
    Column("origin", String(16), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("ended_at", Float, nullable=False),
    Column("inserted", BigInteger, nullable=False),
    Column("deleted", BigInteger, nullable=False),
    Column("ranges", Text, nullable=False),  # JSON [[client, start, end], ...]
    Column("source_version", BigInteger),  # a restore's: the version it restored
    # The items it deleted: collab.protocol.codec.encode_id_ranges (0007).
    Column("deleted_ranges", LargeBinary),
    # Per text root: JSON {root: [inserted, deleted]}, or one root's name when
    # it is the only root the session touched (its counts are the totals) (0007).
    Column("roots", Text),
    Index("ix_edit_sessions_document_key", "document", "key", unique=True),
    Index("ix_edit_sessions_document_ended", "document", "ended_at"),
    sqlite_autoincrement=True,
)

# -- Events and webhooks (collab.storage.outbox) --------------------------------
# `events` is the outbox: a change's transaction inserts its event with no `seq`;
# the publisher numbers events (`seq`, the feed's cursor, in commit order: the
# `event_counter` row is locked while it numbers) and fans each out to a
# `webhook_deliveries` row per subscription. `pending_changes` is the one row per
# edited document that becomes a `document.updated` event once editing goes
# quiet. None of them has a foreign key to `documents`: events outlive deletion.
events = Table(
    "events",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("seq", BigInteger, unique=True),  # NULL until published
    Column("document", String(128), nullable=False),
    Column("type", String(32), nullable=False),
    Column("occurred_at", Float, nullable=False),
    Column("data", Text, nullable=False),  # JSON object
    sqlite_autoincrement=True,
)

event_counter = Table(
    "event_counter",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("last_seq", BigInteger, nullable=False),
)

pending_changes = Table(
    "pending_changes",
    metadata,
    Column("document", String(128), primary_key=True),
    Column("first_at", Float, nullable=False),
    Column("last_at", Float, nullable=False),
    Column("first_row", BigInteger, nullable=False),
    Column("last_row", BigInteger, nullable=False),
    Column("author", Text),
)

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("url", Text, nullable=False),
    Column("secret", Text),  # NULL: COLLAB_WEBHOOK_SECRET
    Column("source", String(16), nullable=False),  # "config" or "api"
    Column("created_at", Float, nullable=False),
    sqlite_autoincrement=True,
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column(
        "subscription_id",
        _Id,
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("event_seq", BigInteger, primary_key=True),
    Column("document", String(128), nullable=False),
    Column("status", String(16), nullable=False),  # "pending" or "parked"
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("claimed_by", String(36)),
    Column("claimed_until", Float),
    Column("last_attempt_at", Float),
    Column("last_error", Text),
    Index("ix_webhook_deliveries_queue", "subscription_id", "document", "event_seq"),
    Index("ix_webhook_deliveries_status", "status", "next_attempt_at"),
)

SNAPSHOT_INFO_COLUMNS = (
    snapshots.c.id,
    snapshots.c.document,
    snapshots.c.created_at,
    snapshots.c.updated_at,
    snapshots.c.kind,
    snapshots.c.label,
    snapshots.c.author,
    snapshots.c.size_bytes,
    snapshots.c.preview,
)


def snapshot_info(row: Any) -> SnapshotInfo:
    return SnapshotInfo(
        id=row.id,
        document=row.document,
        created_at=row.created_at,
        updated_at=row.updated_at,
        kind=SnapshotKind(row.kind),
        label=row.label,
        author=row.author,
        size_bytes=row.size_bytes,
        preview=row.preview,
    )
