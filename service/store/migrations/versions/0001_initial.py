"""Initial schema: notifications, inbox entries, per-inbox counters.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Create the tables."""
    op.create_table(
        "notifications",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("app_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(100), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("recipient_count", sa.Integer(), nullable=False),
        sa.Column("producer", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("request_hash", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("app_id", "producer", "idempotency_key", name="uq_notifications_idempotency"),
    )
    op.create_index("ix_notifications_status_created", "notifications", ["status", "created_at"])
    op.create_table(
        "inbox_entries",
        sa.Column("app_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("seq", _SEQ, primary_key=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("notification_id", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("app_id", "user_id", "notification_id", name="uq_inbox_entries_notification"),
    )
    op.create_index("ix_inbox_entries_notification", "inbox_entries", ["notification_id"])
    op.create_table(
        "inbox_counters",
        sa.Column("app_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("epoch", sa.Integer(), nullable=False),
        sa.Column("seq", _SEQ, nullable=False),
    )


def downgrade() -> None:
    """Drop the tables."""
    op.drop_table("inbox_counters")
    op.drop_index("ix_inbox_entries_notification", table_name="inbox_entries")
    op.drop_table("inbox_entries")
    op.drop_index("ix_notifications_status_created", table_name="notifications")
    op.drop_table("notifications")
