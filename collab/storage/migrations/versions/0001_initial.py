"""The schema as it was before migrations: tables created by `create_all`.

Databases made by collab before it had migrations have these tables (or, if
they are older still, some of them) and no alembic_version table. So this
revision creates only the tables that are missing: on a new database it creates
them all, on an old one it adds what that version lacked - and either way the
database is then at 0001 with its data untouched.

The tables are a frozen copy (never import collab.storage.sql_schema here: it moves on).

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def v1_metadata() -> sa.MetaData:
    """The tables `create_all` made before migrations (also used by the tests to
    build a database the way those versions did)."""
    metadata = sa.MetaData()
    sa.Table(
        "documents",
        metadata,
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )

    def per_document() -> list[sa.Column[object]]:
        return [
            sa.Column("id", _Id, primary_key=True, autoincrement=True),
            sa.Column(
                "document",
                sa.String(128),
                sa.ForeignKey("documents.name", ondelete="CASCADE"),
                nullable=False,
            ),
        ]

    sa.Table(
        "updates",
        metadata,
        *per_document(),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Index("ix_updates_document_id", "document", "id"),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "snapshots",
        metadata,
        *per_document(),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("author", sa.Text),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("preview", sa.Text, nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
        sa.Column("covers_update_id", sa.BigInteger, nullable=False),
        sa.Index("ix_snapshots_document_id", "document", "id"),
        sqlite_autoincrement=True,
    )
    sa.Table(
        "server_leases",
        metadata,
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("hostname", sa.Text, nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("heartbeat_at", sa.Float, nullable=False),
        sa.Column("ttl_s", sa.Float, nullable=False),
    )
    sa.Table(
        "tombstones",
        metadata,
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("state_vector", sa.LargeBinary, nullable=False),
        sa.Column("deleted_at", sa.Float, nullable=False),
    )
    sa.Table(
        "quarantine",
        metadata,
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("document", sa.String(128), nullable=False, index=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("source_id", sa.BigInteger, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("quarantined_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    return metadata


def upgrade() -> None:
    v1_metadata().create_all(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    v1_metadata().drop_all(op.get_bind())
