"""Who wrote what: the client ids each author owns, and editing sessions.

- client_authors(document, client_id) -> subject: the first author to create
  content under a Yjs client id owns it (a connection of another author may not
  write under it).
- edit_sessions: one row per author's burst of editing (clock ranges created,
  characters inserted and deleted, start and end), upserted on (document, key).

Both are written in the transaction of the log rows they describe and deleted
with their document.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _document_column(*, primary_key: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(
        "document",
        sa.String(128),
        sa.ForeignKey("documents.name", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "client_authors",
        _document_column(primary_key=True),
        sa.Column("client_id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("claimed_at", sa.Float, nullable=False),
    )
    op.create_table(
        "edit_sessions",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        _document_column(),
        sa.Column("key", sa.BigInteger, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("name", sa.Text),
        sa.Column("is_verified", sa.Boolean, nullable=False),
        sa.Column("origin", sa.String(16), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("ended_at", sa.Float, nullable=False),
        sa.Column("inserted", sa.BigInteger, nullable=False),
        sa.Column("deleted", sa.BigInteger, nullable=False),
        sa.Column("ranges", sa.Text, nullable=False),
        sa.Column("source_version", sa.BigInteger),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_edit_sessions_document_key", "edit_sessions", ["document", "key"], unique=True
    )
    op.create_index("ix_edit_sessions_document_ended", "edit_sessions", ["document", "ended_at"])


def downgrade() -> None:
    op.drop_table("edit_sessions")
    op.drop_table("client_authors")
