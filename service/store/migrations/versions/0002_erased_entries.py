"""Tombstones of in-flight entries removed by an inbox erase.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Create erased_entries."""
    op.create_table(
        "erased_entries",
        sa.Column("notification_id", sa.String(32), primary_key=True),
        sa.Column("app_id", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(128), primary_key=True),
    )


def downgrade() -> None:
    """Drop erased_entries."""
    op.drop_table("erased_entries")
