"""The store's one door: notifications, inbox entries and per-inbox seq counters.

Every SQLAlchemy exception that means "the database is not answering" leaves
this module as :class:`~service.errors.StoreUnavailable`; a duplicate
Idempotency-Key leaves it as an existing notification or an
:class:`~service.errors.IdempotencyConflict`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.cursor import Cursor
from service.domain.models import Entry
from service.domain.rules import IDEMPOTENCY_WINDOW_S
from service.errors import IdempotencyConflict, StoreUnavailable
from service.store.engine import SQLITE_LOCK_WAIT_S, Database
from service.store.tables import ErasedEntry, InboxCounter, InboxEntry, Notification

FIRST_EPOCH = 1
"""Epoch of an inbox that has never been erased."""

_notifications = Notification.__table__
_entries = InboxEntry.__table__
_counters = InboxCounter.__table__
_erased = ErasedEntry.__table__

_ENTRY_COLUMNS = (
    _entries.c.seq,
    _entries.c.epoch,
    _entries.c.created_at,
    _entries.c.expires_at,
    _entries.c.read_at,
    _entries.c.archived_at,
    _notifications.c.id,
    _notifications.c.type,
    _notifications.c.title,
    _notifications.c.body,
    _notifications.c.data,
    _notifications.c.priority,
)


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def iso(moment: datetime | None) -> str | None:
    """RFC 3339 text in UTC with milliseconds; SQLite hands back naive UTC values."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


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
        )


@dataclass(frozen=True, slots=True)
class Delivered:
    """An entry stored for one user, ready to publish."""

    user_id: str
    epoch: int
    entry: Entry


@dataclass(frozen=True, slots=True)
class Page:
    """Entries after a cursor, in seq order."""

    items: list[Entry]
    next_cursor: Cursor
    has_more: bool
    truncated: bool


def _entry_from_row(row: Any) -> Entry:
    return Entry(
        id=row.id,
        seq=row.seq,
        cursor=Cursor(row.epoch, row.seq).encode(),
        type=row.type,
        title=row.title,
        body=row.body,
        data=row.data,
        priority=row.priority,
        created_at=iso(row.created_at) or "",
        expires_at=iso(row.expires_at),
        read_at=iso(row.read_at),
        archived_at=iso(row.archived_at),
    )


def _inbox_entries(app_id: str, user_id: str, epoch: int, *conditions: Any) -> Any:
    """Entries of one inbox epoch, joined with their notifications, filtered by ``conditions``."""
    return (
        select(*_ENTRY_COLUMNS)
        .join(_notifications, _notifications.c.id == _entries.c.notification_id)
        .where(_entries.c.app_id == app_id, _entries.c.user_id == user_id, _entries.c.epoch == epoch, *conditions)
    )


_UNAVAILABLE = (OperationalError, InterfaceError, OSError, ConnectionError, TimeoutError)
_TRANSIENT_SQLSTATES = frozenset({"40001", "40P01"})
"""Serialization failure and deadlock: the transaction can simply run again."""


def _transient(exc: DBAPIError) -> bool:
    return exc.connection_invalidated or getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


class Repository:
    """Reads and writes of the store. Safe to share across tasks."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._insert = postgresql.insert if database.dialect == "postgresql" else sqlite.insert
        # SQLite has one writer at a time anyway: queue this process's writers here, in order,
        # rather than have each of them poll the file lock against the others.
        self._sqlite_writer = asyncio.Lock() if database.dialect == "sqlite" else None

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with contextlib.AsyncExitStack() as stack:
            if self._sqlite_writer is not None:
                await stack.enter_async_context(self._sqlite_writer)
            async with self._transaction() as connection:
                yield connection

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._db.writer.connect() as connection:
                await self._begin(connection)
                try:
                    yield connection
                except BaseException:
                    await connection.rollback()
                    raise
                await connection.commit()
        except IntegrityError:
            raise
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        except DBAPIError as exc:
            if _transient(exc):
                raise StoreUnavailable(f"database busy or connection lost: {type(exc.orig).__name__}") from exc
            raise

    async def _begin(self, connection: AsyncConnection) -> None:
        """Begin a write transaction; on SQLite, wait for the write lock without blocking.

        SQLite's own busy handler sleeps in growing steps (up to 100 ms) while another
        process writes; polling here with short async sleeps keeps writers close behind
        each other and the event loop free.
        """
        if self._db.dialect != "sqlite":
            await connection.begin()
            return
        deadline = time.monotonic() + SQLITE_LOCK_WAIT_S
        delay = 0.0005
        while True:
            try:
                await connection.begin()
                return
            except OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                await connection.rollback()
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.004)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        try:
            async with self._db.reader.connect() as connection:
                yield connection
        except _UNAVAILABLE as exc:
            raise StoreUnavailable(f"database unavailable: {type(exc).__name__}") from exc
        except DBAPIError as exc:
            if _transient(exc):
                raise StoreUnavailable(f"database busy or connection lost: {type(exc.orig).__name__}") from exc
            raise

    async def ping(self) -> None:
        """Raise :class:`StoreUnavailable` unless the database answers."""
        async with self._read() as connection:
            await connection.execute(select(1))

    # -- notifications ---------------------------------------------------------------

    async def accept(self, new: NewNotification) -> tuple[StoredNotification, bool]:
        """Store a notification as ``accepted``.

        Returns:
            The stored notification and whether this call created it (``False``
            when the Idempotency-Key was seen before with the same request).

        Raises:
            IdempotencyConflict: the key was used before with a different request.
        """
        row = {
            "id": new_notification_id(),
            "app_id": new.app_id,
            "type": new.type,
            "title": new.title,
            "body": new.body,
            "data": new.data,
            "priority": new.priority,
            "status": "accepted",
            "reason": None,
            "recipients": new.recipients,
            "recipient_count": len(new.recipients),
            "producer": new.producer,
            "idempotency_key": new.idempotency_key,
            "request_hash": new.request_hash,
            "created_at": utcnow(),
            "expires_at": None,
            "delivered_at": None,
        }
        expired: StoredNotification | None = None
        if new.idempotency_key is not None:
            existing = await self._by_idempotency_key(new)
            if existing is not None:
                if _aware(existing.created_at) > row["created_at"] - timedelta(seconds=IDEMPOTENCY_WINDOW_S):
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
        """A notification and its entry count, read in one statement so the two agree."""
        count = (
            select(func.count())
            .select_from(_entries)
            .where(_entries.c.notification_id == _notifications.c.id)
            .scalar_subquery()
            .label("entry_count")
        )
        query = select(_notifications, count).where(
            _notifications.c.id == notification_id, _notifications.c.app_id == app_id
        )
        async with self._read() as connection:
            row = (await connection.execute(query)).first()
        return (StoredNotification.from_row(row), int(row.entry_count)) if row is not None else None

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

    async def _mark_delivered_if_complete(
        self, connection: AsyncConnection, notification_id: str, *, whole: bool = False
    ) -> None:
        """Set ``delivered`` once every recipient has an entry (or had one, erased since).

        ``whole`` says this transaction covered every recipient (a one-chunk notification):
        then it is complete by construction, and the count (and its lock) is skipped.
        """
        if whole:
            await connection.execute(
                update(_notifications)
                .where(_notifications.c.id == notification_id, _notifications.c.status == "accepted")
                .values(status="delivered", delivered_at=utcnow())
            )
            return
        # Lock the notification row before counting: of two chunks committing at once, each
        # would otherwise count without the other's uncommitted entries and neither would mark
        # it delivered. Taken last, after every counter row, so it cannot close a lock cycle.
        if self._sqlite_writer is None:  # SQLite transactions are serialized already
            await connection.execute(
                select(_notifications.c.id).where(_notifications.c.id == notification_id).with_for_update()
            )
        count = (
            select(func.count())
            .select_from(_entries)
            .where(_entries.c.notification_id == notification_id)
            .scalar_subquery()
        ) + (
            select(func.count())
            .select_from(_erased)
            .where(_erased.c.notification_id == notification_id)
            .scalar_subquery()
        )
        await connection.execute(
            update(_notifications)
            .where(
                _notifications.c.id == notification_id,
                _notifications.c.status == "accepted",
                _notifications.c.recipient_count <= count,
            )
            .values(status="delivered", delivered_at=utcnow())
        )

    async def mark_failed(self, notification_id: str, reason: str) -> None:
        """Give up on a notification that cannot be delivered."""
        async with self._write() as connection:
            await connection.execute(
                update(_notifications)
                .where(_notifications.c.id == notification_id, _notifications.c.status == "accepted")
                .values(status="failed", reason=reason)
            )

    async def stale_accepted(self, older_than: timedelta, limit: int = 500) -> list[tuple[str, str]]:
        """(id, priority) of notifications still ``accepted`` after ``older_than`` (for the sweeper)."""
        cutoff = utcnow() - older_than
        async with self._read() as connection:
            rows = await connection.execute(
                select(_notifications.c.id, _notifications.c.priority)
                .where(_notifications.c.status == "accepted", _notifications.c.created_at < cutoff)
                .order_by(_notifications.c.created_at)
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
                    select(_entries.c.user_id, *_ENTRY_COLUMNS)
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
        delivered = [Delivered(row.user_id, row.epoch, _entry_from_row(row)) for row in existing_rows]
        async with self._write() as connection:
            if not todo:
                await self._mark_delivered_if_complete(connection, notification.id)
                return delivered
            upsert = self._insert(_counters).values(
                [{"app_id": app_id, "user_id": user, "epoch": FIRST_EPOCH, "seq": 1} for user in todo]
            )
            upsert = upsert.on_conflict_do_update(
                index_elements=[_counters.c.app_id, _counters.c.user_id],
                set_={"seq": _counters.c.seq + 1},
            ).returning(_counters.c.user_id, _counters.c.epoch, _counters.c.seq)
            allocated = {row.user_id: (row.epoch, row.seq) for row in await connection.execute(upsert)}
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
            whole = len(users) == notification.recipient_count  # users are this chunk's, deduplicated
            await self._mark_delivered_if_complete(connection, notification.id, whole=whole)
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

    async def erase_inbox(self, app_id: str, user_id: str) -> Cursor:
        """Delete every entry of an inbox and start a new epoch; return the new head.

        Cursors of the old epoch are then recognised (``cursor_reset``); the next entry
        is seq 1 of the new epoch. The counter row is moved first: that takes its lock,
        so an in-flight fan-out to this user (which holds it) commits before the delete
        runs and its entry is deleted too, and both take their locks in the same order.
        """
        async with self._write() as connection:
            upsert = self._insert(_counters).values(app_id=app_id, user_id=user_id, epoch=FIRST_EPOCH + 1, seq=0)
            upsert = upsert.on_conflict_do_update(
                index_elements=[_counters.c.app_id, _counters.c.user_id],
                set_={"epoch": _counters.c.epoch + 1, "seq": 0},
            ).returning(_counters.c.epoch)
            epoch = (await connection.execute(upsert)).scalar_one()
            in_flight = (
                select(_entries.c.notification_id, _entries.c.app_id, _entries.c.user_id)
                .join(_notifications, _notifications.c.id == _entries.c.notification_id)
                .where(
                    _entries.c.app_id == app_id,
                    _entries.c.user_id == user_id,
                    _notifications.c.status == "accepted",
                )
            )
            await connection.execute(
                self._insert(_erased)
                .from_select(["notification_id", "app_id", "user_id"], in_flight)
                .on_conflict_do_nothing()
            )
            await connection.execute(
                _entries.delete().where(_entries.c.app_id == app_id, _entries.c.user_id == user_id)
            )
        return Cursor(epoch, 0)

    # -- inbox reads -----------------------------------------------------------------

    async def head(self, app_id: str, user_id: str) -> Cursor:
        """The cursor after the newest entry of an inbox (seq 0 when it is empty)."""
        async with self._read() as connection:
            return await self._head(connection, app_id, user_id)

    @staticmethod
    async def _head(connection: AsyncConnection, app_id: str, user_id: str) -> Cursor:
        row = (
            await connection.execute(
                select(_counters.c.epoch, _counters.c.seq).where(
                    _counters.c.app_id == app_id, _counters.c.user_id == user_id
                )
            )
        ).first()
        return Cursor(row.epoch, row.seq) if row is not None else Cursor(FIRST_EPOCH, 0)

    async def heads(self, app_id: str, user_ids: Sequence[str]) -> dict[str, Cursor]:
        """Head cursors of many inboxes in one query (users with no inbox are left out)."""
        if not user_ids:
            return {}
        async with self._read() as connection:
            rows = await connection.execute(
                select(_counters.c.user_id, _counters.c.epoch, _counters.c.seq).where(
                    _counters.c.app_id == app_id, _counters.c.user_id.in_(list(user_ids))
                )
            )
            return {row.user_id: Cursor(row.epoch, row.seq) for row in rows}

    async def unread_count(self, app_id: str, user_id: str) -> int:
        """Entries not read, not archived and not expired."""
        now = utcnow()
        async with self._read() as connection:
            return int(
                (
                    await connection.execute(
                        select(func.count())
                        .select_from(_entries)
                        .where(
                            _entries.c.app_id == app_id,
                            _entries.c.user_id == user_id,
                            _entries.c.read_at.is_(None),
                            _entries.c.archived_at.is_(None),
                            (_entries.c.expires_at.is_(None)) | (_entries.c.expires_at > now),
                        )
                    )
                ).scalar_one()
            )

    async def entries_after(
        self, app_id: str, user_id: str, epoch: int, after_seq: int, limit: int, *, up_to: int | None = None
    ) -> list[Entry]:
        """Up to ``limit`` entries of ``epoch`` with ``after_seq < seq [<= up_to]``, in seq order."""
        conditions = [_entries.c.seq > after_seq]
        if up_to is not None:
            conditions.append(_entries.c.seq <= up_to)
        async with self._read() as connection:
            rows = await connection.execute(
                _inbox_entries(app_id, user_id, epoch, *conditions).order_by(_entries.c.seq).limit(limit)
            )
            return [_entry_from_row(row) for row in rows]

    async def page_before(self, app_id: str, user_id: str, before: Cursor, limit: int) -> Page:
        """History: entries with seq <= ``before.seq`` in its epoch, newest first.

        ``next_cursor`` continues with older entries; ``truncated`` is never set (history
        simply ends where retention cut it).
        """
        async with self._read() as connection:
            rows = (
                await connection.execute(
                    _inbox_entries(app_id, user_id, before.epoch, _entries.c.seq <= before.seq)
                    .order_by(_entries.c.seq.desc())
                    .limit(limit + 1)
                )
            ).all()
        items = [_entry_from_row(row) for row in rows[:limit]]
        next_cursor = Cursor(before.epoch, items[-1].seq - 1) if items else before
        return Page(items=items, next_cursor=next_cursor, has_more=len(rows) > limit, truncated=False)

    async def page_after(self, app_id: str, user_id: str, after: Cursor | None, limit: int) -> Page:
        """A polling page: entries after ``after`` (the start of the inbox when ``None``).

        The caller has checked that ``after`` is of the inbox's current epoch.
        """
        after_seq = after.seq if after is not None else 0
        async with self._read() as connection:
            head = await self._head(connection, app_id, user_id)
            epoch = after.epoch if after is not None else head.epoch
            rows = (
                await connection.execute(
                    # Only the cursor's epoch: an erase between the caller's epoch check and
                    # this read must not hand an old cursor entries of the new inbox.
                    _inbox_entries(app_id, user_id, epoch, _entries.c.seq > after_seq)
                    .order_by(_entries.c.seq)
                    .limit(limit + 1)
                )
            ).all()
            # Entries between the cursor and the first one still stored were removed.
            truncated = after is not None and bool(rows) and rows[0].seq > after_seq + 1
        items = [_entry_from_row(row) for row in rows[:limit]]
        has_more = len(rows) > limit
        if items:
            next_cursor = Cursor(epoch, items[-1].seq)
        else:
            next_cursor = after if after is not None else head
        return Page(items=items, next_cursor=next_cursor, has_more=has_more, truncated=truncated)


class _Row:
    """Attribute access over a dict, to build a StoredNotification from inserted values."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)
