"""Editing sessions keep what they deleted (by item id) and counts per text root.

- edit_sessions.deleted_ranges: JSON [[client, start, end], ...], the items the
  session deleted, whoever wrote them: a revert brings that text back.
- edit_sessions.roots: JSON {root: [inserted, deleted]}, characters per text root.

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
        batch.add_column(sa.Column("deleted_ranges", sa.Text))
        batch.add_column(sa.Column("roots", sa.Text))


def downgrade() -> None:
    with op.batch_alter_table("edit_sessions") as batch:
        batch.drop_column("roots")
        batch.drop_column("deleted_ranges")
