"""Editing sessions are folded from their log rows' deltas, not rewritten per commit.

- updates.sessions: what the row added to each editing session (JSON, see
  collab.storage.attribution.encode_deltas); NULL when it added to none.
- edit_sessions.through_id: the newest log row whose delta the session row
  holds; a read or a compaction folds only the newer ones.

Both nullable: rows from before this revision have neither, and need neither
(their sessions were written whole).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("updates", sa.Column("sessions", sa.Text))
    op.add_column("edit_sessions", sa.Column("through_id", sa.BigInteger))


def downgrade() -> None:
    with op.batch_alter_table("edit_sessions") as batch:
        batch.drop_column("through_id")
    with op.batch_alter_table("updates") as batch:
        batch.drop_column("sessions")
