"""Topics, scheduling, read state and retention.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    """Add topic subscriptions, scheduling columns, the retention floor and their indexes."""
    op.create_table(
        "topic_subscriptions",
        sa.Column("app_id", sa.String(64), primary_key=True),
        sa.Column("topic", sa.String(128), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_topic_subscriptions_user", "topic_subscriptions", ["app_id", "user_id", "topic"])
    with op.batch_alter_table("notifications") as batch:
        batch.add_column(sa.Column("topic", sa.String(128), nullable=True))
        batch.add_column(sa.Column("send_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("started_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("stored_count", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True))
    # Notifications in flight across the upgrade: count what they stored already.
    op.execute(
        "UPDATE notifications SET stored_count = "
        "(SELECT count(*) FROM inbox_entries WHERE inbox_entries.notification_id = notifications.id) + "
        "(SELECT count(*) FROM erased_entries WHERE erased_entries.notification_id = notifications.id) "
        "WHERE status = 'accepted'"
    )
    op.create_index("ix_notifications_status_send_at", "notifications", ["status", "send_at"])
    with op.batch_alter_table("inbox_counters") as batch:
        batch.add_column(sa.Column("floor_seq", _SEQ, nullable=False, server_default="0"))
    op.create_index("ix_inbox_entries_created", "inbox_entries", ["created_at"])


def downgrade() -> None:
    """Remove what upgrade added."""
    op.drop_index("ix_inbox_entries_created", table_name="inbox_entries")
    with op.batch_alter_table("inbox_counters") as batch:
        batch.drop_column("floor_seq")
    op.drop_index("ix_notifications_status_send_at", table_name="notifications")
    with op.batch_alter_table("notifications") as batch:
        batch.drop_column("progress_at")
        batch.drop_column("stored_count")
        batch.drop_column("started_at")
        batch.drop_column("send_at")
        batch.drop_column("topic")
    op.drop_index("ix_topic_subscriptions_user", table_name="topic_subscriptions")
    op.drop_table("topic_subscriptions")
