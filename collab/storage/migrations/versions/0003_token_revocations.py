"""Revoked tokens: the table every process of a server loads its revocations from.

- token_revocations: one row per revocation, by `jti` or by subject, until
  `until` (NULL: for good). It is the source of truth; the Redis bus only tells
  the other processes sooner.

The table is a frozen copy (never import collab.storage.sql_schema's tables here:
they move on).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "token_revocations",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=False),
        sa.Column("until", sa.Float),
        sa.Column("reason", sa.Text),
        sa.Column("revoked_by", sa.Text),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("token_revocations")
