"""Notifications and their fan-out into inbox entries with per-inbox seq counters.

Every SQLAlchemy exception that means "the database is not answering" leaves
this module as :class:`~service.errors.StoreUnavailable`; a duplicate
Idempotency-Key leaves it as an existing notification or an
:class:`~service.errors.IdempotencyConflict`.
"""

from __future__ import annotations

import dataclasses
import functools
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, case, func, literal, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.cursor import Cursor
from service.domain.models import Entry
from service.domain.rules import IDEMPOTENCY_WINDOW_S
from service.errors import IdempotencyConflict
from service.store.access import iso, utcnow
from service.store.inbox import ENTRY_COLUMNS, FIRST_EPOCH, InboxStore, entry_from_row
from service.store.tables import (
    ErasedEntry,
    InboxCounter,
    InboxEntry,
    Notification,
    TopicSubscription,
)

_notifications = Notification.__table__
_entries = InboxEntry.__table__
_counters = InboxCounter.__table__
_erased = ErasedEntry.__table__
_subscriptions = TopicSubscription.__table__

def new_notification_id() -> str:
    """A 32-character id that sorts by creation time."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


@dataclass(frozen=True, slots=True)
class NewNotification:
    """What the API accepted, before it is stored."""

    app_id: str
    type: str
    title: str
    body: str | None
    data: dict[str, Any]
    priority: str
    recipients: list[str]
    producer: str
    idempotency_key: str | None
    request_hash: str | None
    topic: str | None = None
    """Set instead of ``recipients``: resolved to the topic's subscribers when delivery starts."""
    send_at: datetime | None = None
    """Deliver then, not now (``scheduled`` until it is due)."""
    ttl_seconds: int | None = None
    """Hide the entries this long after delivery is due."""


@dataclass(frozen=True, slots=True)
class StoredNotification:
    """A notification row as the API and workers see it."""

    id: str
    app_id: str
    status: str
    type: str
    title: str
    body: str | None
    data: dict[str, Any]
    priority: str
    recipients: list[str]
    recipient_count: int
    reason: str | None
    created_at: datetime
    expires_at: datetime | None
    request_hash: str | None
    topic: str | None = None
    send_at: datetime | None = None
    started_at: datetime | None = None

    @property
    def due(self) -> bool:
        """Whether its ``send_at`` (if any) has come."""
        return self.send_at is None or self.send_at <= utcnow()

    @classmethod
    def from_row(cls, row: Any) -> StoredNotification:
        """Build from a ``notifications`` row."""
        return cls(
            id=row.id,
            app_id=row.app_id,
            status=row.status,
            type=row.type,
            title=row.title,
            body=row.body,
            data=row.data,
            priority=row.priority,
            recipients=list(row.recipients),
            recipient_count=row.recipient_count,
            reason=row.reason,
            created_at=row.created_at,
            expires_at=row.expires_at,
            request_hash=row.request_hash,
            topic=row.topic,
            send_at=row.send_at,
            started_at=row.started_at,
        )


@dataclass(frozen=True, slots=True)
class Delivered:
    """An entry stored for one user, ready to publish."""

    user_id: str
    epoch: int
    entry: Entry


class Repository(InboxStore):
    """Notifications and their fan-out, plus the inbox reads of :class:`InboxStore`. Safe to share
    across tasks."""

    @functools.cached_property
    def _allocate_seqs(self) -> Any:
        """``INSERT … ON CONFLICT DO UPDATE SET seq = seq + 1 RETURNING`` for one counter row."""
        return (
            self._insert(_counters)
            .on_conflict_do_update(
                index_elements=[_counters.c.app_id, _counters.c.user_id], set_={"seq": _counters.c.seq + 1}
            )
            .returning(_counters.c.user_id, _counters.c.epoch, _counters.c.seq)
        )

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers."""
        async with self._read() as connection:
            await connection.execute(select(1))

    # -- notifications ---------------------------------------------------------------

    async def accept(self, new: NewNotification) -> tuple[StoredNotification, bool]:
        """Store a notification as ``accepted`` (``scheduled`` when its ``send_at`` is ahead).

        Returns:
            The stored notification and whether this call created it (``False``
            when the Idempotency-Key was seen before with the same request).

        Raises:
            IdempotencyConflict: the key was used before with a different request.
        """
        now = utcnow()
        due_at = max(now, new.send_at) if new.send_at is not None else now
        row = {
            "id": new_notification_id(),
            "app_id": new.app_id,
            "type": new.type,
            "title": new.title,
            "body": new.body,
            "data": new.data,
            "priority": new.priority,
            "status": "scheduled" if due_at > now else "accepted",
            "reason": None,
            "recipients": new.recipients,
            "recipient_count": len(new.recipients),
            "topic": new.topic,
            "producer": new.producer,
            "idempotency_key": new.idempotency_key,
            "request_hash": new.request_hash,
            "created_at": now,
            "expires_at": due_at + timedelta(seconds=new.ttl_seconds) if new.ttl_seconds else None,
            "delivered_at": None,
            "send_at": new.send_at,
            "started_at": None,
            "stored_count": 0,
            "progress_at": None,
        }
        expired: StoredNotification | None = None
        if new.idempotency_key is not None:
            existing = await self._by_idempotency_key(new)
            if existing is not None:
                if existing.created_at > row["created_at"] - timedelta(seconds=IDEMPOTENCY_WINDOW_S):
                    return self._same_request(existing, new), False
                expired = existing  # remembered for 24 h only: this key now names a new notification
        try:
            async with self._write() as connection:
                if expired is not None:
                    await connection.execute(
                        update(_notifications)
                        .where(_notifications.c.id == expired.id)
                        .values(idempotency_key=None)
                    )
                await connection.execute(_notifications.insert().values(**row))
        except IntegrityError:
            # Another request with the same key won the race: answer with its notification.
            existing = await self._by_idempotency_key(new)
            if existing is None:
                raise
            return self._same_request(existing, new), False
        return StoredNotification.from_row(_Row(row)), True

    @staticmethod
    def _same_request(existing: StoredNotification, new: NewNotification) -> StoredNotification:
        if existing.request_hash != new.request_hash:
            raise IdempotencyConflict(
                "this Idempotency-Key was already used with a different request", field="Idempotency-Key"
            )
        return existing

    async def _by_idempotency_key(self, new: NewNotification) -> StoredNotification | None:
        async with self._read() as connection:
            row = (
                await connection.execute(
                    select(_notifications).where(
                        _notifications.c.app_id == new.app_id,
                        _notifications.c.producer == new.producer,
                        _notifications.c.idempotency_key == new.idempotency_key,
                    )
                )
            ).first()
        return StoredNotification.from_row(row) if row is not None else None

    async def get_notification(self, notification_id: str, app_id: str | None = None) -> StoredNotification | None:
        """A notification by id (restricted to ``app_id`` when given)."""
        query = select(_notifications).where(_notifications.c.id == notification_id)
        if app_id is not None:
            query = query.where(_notifications.c.app_id == app_id)
        async with self._read() as connection:
            row = (await connection.execute(query)).first()
        return StoredNotification.from_row(row) if row is not None else None

    async def status_of(self, notification_id: str, app_id: str) -> tuple[StoredNotification, int] | None:
        """A notification and how many entries its fan-out stored, from one row so the two agree.

        The count is kept by the fan-out itself (O(1) to read, however large the topic); an
        entry erased since still counts.
        """
        # Not the recipients: for a big topic that list is large, and a status poll needs none of it.
        columns = [column for column in _notifications.c if column.name != "recipients"]
        query = select(*columns, literal([], JSON).label("recipients")).where(
            _notifications.c.id == notification_id, _notifications.c.app_id == app_id
        )
        async with self._read() as connection:
            row = (await connection.execute(query)).first()
        return (StoredNotification.from_row(row), int(row.stored_count)) if row is not None else None

    async def delivered_count(self, notification_id: str) -> int:
        """How many inbox entries a notification has."""
        async with self._read() as connection:
            return int(
                (
                    await connection.execute(
                        select(func.count()).select_from(_entries).where(_entries.c.notification_id == notification_id)
                    )
                ).scalar_one()
            )

    async def _record_progress(self, connection: AsyncConnection, notification_id: str, stored: int) -> None:
        """Count ``stored`` new entries and set ``delivered`` once every recipient has had one.

        One UPDATE, the last statement of the chunk's transaction: it takes the notification
        row's lock (after every counter row, so it cannot close a lock cycle), and a second
        chunk committing at the same time waits for it and then sees its count, so the last
        chunk always marks it. The count never goes down: an entry erased since still counts
        (its tombstone keeps it from being stored again).
        """
        total = _notifications.c.stored_count + stored
        complete = total >= _notifications.c.recipient_count
        now = utcnow()
        await connection.execute(
            update(_notifications)
            .where(_notifications.c.id == notification_id, _notifications.c.status == "accepted")
            .values(
                stored_count=total,
                progress_at=now,
                status=case((complete, "delivered"), else_=_notifications.c.status),
                delivered_at=case((complete, now), else_=_notifications.c.delivered_at),
            )
        )

    async def mark_failed(self, notification_id: str, reason: str) -> None:
        """Give up on a notification that cannot be delivered."""
        async with self._write() as connection:
            await connection.execute(
                update(_notifications)
                .where(_notifications.c.id == notification_id, _notifications.c.status == "accepted")
                .values(status="failed", reason=reason)
            )

    async def start(self, notification_id: str) -> StoredNotification | None:
        """Begin the delivery of a due notification, once: fix its recipients and make it
        ``accepted`` and no longer cancellable.

        A topic is resolved here, to its subscribers at this moment (for a scheduled
        notification: when it is due); a topic without subscribers is ``delivered`` at once.
        Safe to call again. Returns the notification as it is after the call, whatever its
        status (``scheduled`` when not yet due), or ``None`` when it does not exist.
        """
        async with self._write() as connection:
            query = select(_notifications).where(_notifications.c.id == notification_id)
            if not self._serialized:
                query = query.with_for_update()  # one of start() and cancel() wins, never both
            row = (await connection.execute(query)).first()
            if row is None:
                return None
            current = StoredNotification.from_row(row)
            if current.started_at is not None or current.status not in ("accepted", "scheduled") or not current.due:
                return current
            now = utcnow()
            values: dict[str, Any] = {"status": "accepted", "started_at": now}
            if current.topic is not None:
                users = list(
                    (
                        await connection.execute(
                            select(_subscriptions.c.user_id)
                            .where(_subscriptions.c.app_id == current.app_id, _subscriptions.c.topic == current.topic)
                            .order_by(_subscriptions.c.user_id)
                        )
                    ).scalars()
                )
                values |= {"recipients": users, "recipient_count": len(users)}
                if not users:
                    values |= {"status": "delivered", "delivered_at": now}
            await connection.execute(
                update(_notifications).where(_notifications.c.id == notification_id).values(**values)
            )
        return dataclasses.replace(
            current,
            status=values["status"],
            started_at=now,
            recipients=values.get("recipients", current.recipients),
            recipient_count=values.get("recipient_count", current.recipient_count),
        )

    async def cancel(self, notification_id: str, app_id: str) -> tuple[StoredNotification, int] | None:
        """Cancel a notification whose delivery has not started (scheduled, or accepted and
        still queued). Returns its status afterwards, ``cancelled`` or not; ``None`` if unknown."""
        async with self._write() as connection:
            await connection.execute(
                update(_notifications)
                .where(
                    _notifications.c.id == notification_id,
                    _notifications.c.app_id == app_id,
                    _notifications.c.status.in_(("scheduled", "accepted")),
                    _notifications.c.started_at.is_(None),
                )
                .values(status="cancelled", reason="cancelled by the producer")
            )
        return await self.status_of(notification_id, app_id)

    async def stale_accepted(self, older_than: timedelta, limit: int = 500) -> list[tuple[str, str]]:
        """(id, priority) of notifications still ``accepted`` after ``older_than`` (for the sweeper).

        Their age counts from the last chunk stored, else from when delivery started (a scheduled
        one may be old when it comes due): a big fan-out that is making progress is left alone.
        """
        cutoff = utcnow() - older_than
        since = func.coalesce(_notifications.c.progress_at, _notifications.c.started_at, _notifications.c.created_at)
        async with self._read() as connection:
            rows = await connection.execute(
                select(_notifications.c.id, _notifications.c.priority)
                .where(_notifications.c.status == "accepted", since < cutoff)
                .order_by(_notifications.c.created_at)
                .limit(limit)
            )
            return [(row.id, row.priority) for row in rows]

    async def due_scheduled(self, limit: int = 500) -> list[tuple[str, str]]:
        """(id, priority) of ``scheduled`` notifications whose ``send_at`` has come."""
        async with self._read() as connection:
            rows = await connection.execute(
                select(_notifications.c.id, _notifications.c.priority)
                .where(_notifications.c.status == "scheduled", _notifications.c.send_at <= utcnow())
                .order_by(_notifications.c.send_at)
                .limit(limit)
            )
            return [(row.id, row.priority) for row in rows]

    # -- fan-out ---------------------------------------------------------------------

    async def fan_out(self, notification: StoredNotification, users: Sequence[str]) -> list[Delivered]:
        """Store one entry per user (at most one chunk) in one transaction.

        Users that already hold an entry for this notification are skipped
        *before* any counter moves, so a re-run burns no seq; their existing
        entries are returned too, so a re-run can re-publish them. Counters are
        locked in ascending user order so concurrent chunks cannot deadlock. A
        racing run of the same chunk makes the insert fail on the unique
        constraint; the transaction then rolls back whole (counters included)
        and is tried again, and finds the other run's entries.
        """
        wanted = sorted(set(users))
        for _attempt in range(5):
            try:
                return await self._fan_out_once(notification, wanted)
            except IntegrityError:
                continue
        return await self._fan_out_once(notification, wanted)

    async def _fan_out_once(self, notification: StoredNotification, users: list[str]) -> list[Delivered]:
        app_id = notification.app_id
        # Read outside the write transaction to keep SQLite's write lock short; an entry that
        # another run commits after this read is caught by the unique constraint (and retried).
        async with self._read() as reader:
            existing_rows = (
                await reader.execute(
                    select(_entries.c.user_id, *ENTRY_COLUMNS)
                    .join(_notifications, _notifications.c.id == _entries.c.notification_id)
                    .where(
                        _entries.c.app_id == app_id,
                        _entries.c.notification_id == notification.id,
                        _entries.c.user_id.in_(users),
                    )
                )
            ).all()
            erased = (
                await reader.execute(
                    select(_erased.c.user_id).where(
                        _erased.c.notification_id == notification.id,
                        _erased.c.app_id == app_id,
                        _erased.c.user_id.in_(users),
                    )
                )
            ).scalars().all()
        done = {row.user_id for row in existing_rows} | set(erased)
        todo = [user for user in users if user not in done]
        delivered = [Delivered(row.user_id, row.epoch, entry_from_row(row)) for row in existing_rows]
        async with self._write() as connection:
            if not todo:
                await self._record_progress(connection, notification.id, 0)
                return delivered
            # One cached statement run over many parameter sets (SQLAlchemy's insertmanyvalues),
            # in the users' sorted order, so the counters are locked in ascending order. A VALUES
            # list built per chunk would be compiled anew every time: most of a chunk's CPU.
            allocated = {
                row.user_id: (row.epoch, row.seq)
                for row in await connection.execute(
                    self._allocate_seqs,
                    [{"app_id": app_id, "user_id": user, "epoch": FIRST_EPOCH, "seq": 1, "floor_seq": 0} for user in todo],
                )
            }
            now = utcnow()
            await connection.execute(
                _entries.insert(),
                [
                    {
                        "app_id": app_id,
                        "user_id": user,
                        "seq": allocated[user][1],
                        "epoch": allocated[user][0],
                        "notification_id": notification.id,
                        "created_at": now,
                        "expires_at": notification.expires_at,
                        "read_at": None,
                        "archived_at": None,
                    }
                    for user in todo
                ],
            )
            # In the same transaction: the status can never say delivered while entries are missing.
            await self._record_progress(connection, notification.id, len(todo))
        created = iso(now) or ""
        for user in todo:
            epoch, seq = allocated[user]
            delivered.append(
                Delivered(
                    user,
                    epoch,
                    Entry(
                        id=notification.id,
                        seq=seq,
                        cursor=Cursor(epoch, seq).encode(),
                        type=notification.type,
                        title=notification.title,
                        body=notification.body,
                        data=notification.data,
                        priority=notification.priority,  # type: ignore[arg-type]
                        created_at=created,
                        expires_at=iso(notification.expires_at),
                        read_at=None,
                        archived_at=None,
                    ),
                )
            )
        return delivered


class _Row:
    """Attribute access over a dict, to build a StoredNotification from inserted values."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
