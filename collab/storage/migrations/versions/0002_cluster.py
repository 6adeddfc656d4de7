"""Several processes on one database: exact compaction and cluster leases.

- documents.snapshot_seq: counts a document's snapshot writes. A snapshot is
  saved only if it was built on the current value (compare-and-set), so with
  several processes compacting, the newest snapshot still contains every
  earlier one.
- snapshots.covers_update_id goes: a snapshot now deletes exactly the log rows
  it contains, and loading applies every row still present, so "the rows after
  the snapshot" is no longer a question anyone asks. (Existing data needs no
  rewrite: the rows a snapshot covered were deleted with it.)
- server_leases.cluster: the Redis key prefix of a clustered server; NULL for a
  server on its own, which must stay the only one on its database.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "documents",
        sa.Column("snapshot_seq", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.add_column("server_leases", sa.Column("cluster", sa.Text))
    # Plain DROP COLUMN (SQLite >= 3.35 has it): no table copy, ids untouched.
    op.execute("ALTER TABLE snapshots DROP COLUMN covers_update_id")


def downgrade() -> None:
    # 0 means "every row after nothing": exactly how loading works now.
    op.add_column(
        "snapshots",
        sa.Column("covers_update_id", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.execute("ALTER TABLE server_leases DROP COLUMN cluster")
    op.execute("ALTER TABLE documents DROP COLUMN snapshot_seq")
