"""SQLAlchemy tables. The schema itself is created by the Alembic migrations beside this."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """A moment, stored as UTC and read back timezone-aware.

    SQLite keeps no offset: without this, ``22:00+02:00`` would be stored as
    ``22:00`` and compared as UTC. Every value is converted to UTC on the way in
    (a naive one is taken as UTC already) and tagged UTC on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(UTC) if value.tzinfo is not None else value.replace(tzinfo=UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every Tidings table."""


class Notification(Base):
    """What a producer sent; the truth about its delivery status."""

    __tablename__ = "notifications"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64))
    type: Mapped[str] = mapped_column(String(100))
    title: Mapped[str] = mapped_column(Text)
    body: Mapped[str | None] = mapped_column(Text, nullable=True)
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    priority: Mapped[str] = mapped_column(String(8), default="normal")
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    recipients: Mapped[list[str]] = mapped_column(JSON)
    """The users it goes to; for a topic, its subscribers as resolved when delivery started."""
    recipient_count: Mapped[int] = mapped_column(Integer)
    topic: Mapped[str | None] = mapped_column(String(128), nullable=True)
    producer: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    send_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    """When fan-out began (recipients fixed); from then on it can no longer be cancelled."""
    stored_count: Mapped[int] = mapped_column(Integer, default=0)
    """Entries stored so far (erased ones included): ``delivered`` when it reaches ``recipient_count``."""
    progress_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    """When the last chunk was stored: the sweeper leaves a fan-out alone while it progresses."""

    __table_args__ = (
        UniqueConstraint("app_id", "producer", "idempotency_key", name="uq_notifications_idempotency"),
        Index("ix_notifications_status_created", "status", "created_at"),
        Index("ix_notifications_status_send_at", "status", "send_at"),
    )


class InboxEntry(Base):
    """One notification in one user's inbox, at position ``seq``."""

    __tablename__ = "inbox_entries"

    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)
    notification_id: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    read_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(UtcDateTime(), nullable=True)

    __table_args__ = (
        # Exactly-once visible: a retried job or a racing worker cannot add a second entry.
        UniqueConstraint("app_id", "user_id", "notification_id", name="uq_inbox_entries_notification"),
        Index("ix_inbox_entries_notification", "notification_id"),
        Index("ix_inbox_entries_created", "created_at"),
    )


class InboxCounter(Base):
    """The last seq handed out in one inbox, and the inbox's epoch."""

    __tablename__ = "inbox_counters"

    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    floor_seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), default=0)
    """Retention removed every entry of this epoch up to here: an older cursor is ``truncated``."""


class ErasedEntry(Base):
    """An entry of a not-yet-delivered notification that an inbox erase removed.

    It counts as delivered, and a re-run of the fan-out skips it instead of putting the
    erased notification back into the new inbox. Only in-flight notifications get one.
    """

    __tablename__ = "erased_entries"

    notification_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)


class TopicSubscription(Base):
    """A user subscribed to a topic; a notification to the topic reaches its subscribers."""

    __tablename__ = "topic_subscriptions"

    app_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    topic: Mapped[str] = mapped_column(String(128), primary_key=True)
    user_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())

    __table_args__ = (Index("ix_topic_subscriptions_user", "app_id", "user_id", "topic"),)
