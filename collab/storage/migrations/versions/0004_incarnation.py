"""A deletion racing a write cannot bring a document back: incarnations.

- tombstones.deletions: how many times the name was deleted (1 for the
  tombstones that exist already: each stands for at least one deletion).
- documents.incarnation: `tombstones.deletions` when the row was created (0 for
  a name never deleted). Writes carry the incarnation their room loaded, and
  are refused in their own transaction if the row is gone or newer, so a room
  that outlived a deletion (on another process, at the same instant) cannot
  re-create the document or write into the next one of that name. Existing
  documents of a name that has a tombstone were created after that deletion.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "tombstones",
        sa.Column("deletions", sa.BigInteger, nullable=False, server_default="1"),
    )
    op.add_column(
        "documents",
        sa.Column("incarnation", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.execute("UPDATE documents SET incarnation = 1 WHERE name IN (SELECT name FROM tombstones)")


def downgrade() -> None:
    op.execute("ALTER TABLE documents DROP COLUMN incarnation")
    op.execute("ALTER TABLE tombstones DROP COLUMN deletions")
