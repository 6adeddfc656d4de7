"""Editing sessions keep what they deleted (by item id) and counts per text root.

- edit_sessions.deleted_ranges: the items the session deleted, whoever wrote
  them, as clock ranges encoded like a Yjs delete set
  (collab.protocol.codec.encode_id_ranges): a revert brings that text back.
- edit_sessions.roots: characters per text root, JSON {root: [inserted,
  deleted]}, or just the root's name when it is the only root the session
  touched (its counts are then the session's totals).

Both nullable: sessions stored before this revision have neither.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("edit_sessions") as batch:
        batch.add_column(sa.Column("deleted_ranges", sa.LargeBinary))
        batch.add_column(sa.Column("roots", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("edit_sessions") as batch:
        batch.drop_column("roots")
        batch.drop_column("deleted_ranges")
