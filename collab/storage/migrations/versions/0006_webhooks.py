"""Events and webhooks: the outbox a change's transaction writes its events to,
the feed's counter, the pending `document.updated` row per edited document, the
subscriptions and the deliveries (see collab.storage.sql_schema).

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("seq", sa.BigInteger, unique=True),
        sa.Column("document", sa.String(128), nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("occurred_at", sa.Float, nullable=False),
        sa.Column("data", sa.Text, nullable=False),
        sqlite_autoincrement=True,
    )
    counter = op.create_table(
        "event_counter",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("last_seq", sa.BigInteger, nullable=False),
    )
    op.bulk_insert(counter, [{"id": 1, "last_seq": 0}])
    op.create_table(
        "pending_changes",
        sa.Column("document", sa.String(128), primary_key=True),
        sa.Column("first_at", sa.Float, nullable=False),
        sa.Column("last_at", sa.Float, nullable=False),
        sa.Column("first_row", sa.BigInteger, nullable=False),
        sa.Column("last_row", sa.BigInteger, nullable=False),
        sa.Column("author", sa.Text),
    )
    op.create_table(
        "webhook_subscriptions",
        sa.Column("id", _Id, primary_key=True, autoincrement=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("secret", sa.Text),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "webhook_deliveries",
        sa.Column(
            "subscription_id",
            _Id,
            sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("event_seq", sa.BigInteger, primary_key=True),
        sa.Column("document", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.Float, nullable=False),
        sa.Column("claimed_by", sa.String(36)),
        sa.Column("claimed_until", sa.Float),
        sa.Column("last_attempt_at", sa.Float),
        sa.Column("last_error", sa.Text),
    )
    op.create_index(
        "ix_webhook_deliveries_queue",
        "webhook_deliveries",
        ["subscription_id", "document", "event_seq"],
    )
    op.create_index(
        "ix_webhook_deliveries_status", "webhook_deliveries", ["status", "next_attempt_at"]
    )


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_subscriptions")
    op.drop_table("pending_changes")
    op.drop_table("event_counter")
    op.drop_table("events")
