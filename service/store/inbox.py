"""One user's inbox: its head and retention floor, pages by cursor, read state, erase.

Every read shows only *visible* entries: of the inbox's current epoch and not
expired. Retention removes a prefix of an inbox and raises its ``floor_seq``;
a cursor below the floor is reported ``truncated`` (a gap from expiry or a
filter is not).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.cursor import Cursor
from service.domain.models import Entry
from service.store.access import Store, iso, utcnow
from service.store.tables import ErasedEntry, InboxCounter, InboxEntry, Notification

FIRST_EPOCH = 1
"""Epoch of an inbox that has never been erased."""

_notifications = Notification.__table__
_entries = InboxEntry.__table__
_counters = InboxCounter.__table__
_erased = ErasedEntry.__table__

ENTRY_COLUMNS = (
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

StateAction = Literal["read", "unread", "archive", "unarchive"]

_STATE_COLUMN: dict[str, str] = {"read": "read_at", "unread": "read_at", "archive": "archived_at", "unarchive": "archived_at"}
_STATE_SETS = frozenset({"read", "archive"})


@dataclass(frozen=True, slots=True)
class Page:
    """Entries after (or before) a cursor."""

    items: list[Entry]
    next_cursor: Cursor
    has_more: bool
    truncated: bool


@dataclass(frozen=True, slots=True)
class EntryFilter:
    """Optional filters of a page: ``unread`` (read_at unset) and ``archived`` (archived_at set)."""

    unread: bool | None = None
    archived: bool | None = None

    def conditions(self) -> list[Any]:
        """SQL conditions on ``inbox_entries``."""
        found: list[Any] = []
        if self.unread is not None:
            found.append(_entries.c.read_at.is_(None) if self.unread else _entries.c.read_at.is_not(None))
        if self.archived is not None:
            found.append(_entries.c.archived_at.is_not(None) if self.archived else _entries.c.archived_at.is_(None))
        return found


NO_FILTER = EntryFilter()


@dataclass(frozen=True, slots=True)
class StateChange:
    """The outcome of a read-state change, as it is pushed to the user's devices."""

    action: StateAction
    at: datetime | None
    """The ``read_at`` / ``archived_at`` value set (``None`` for unread and unarchive)."""
    changed: list[str]
    """Notification ids of the entries whose state changed (others already were in that state)."""
    unread: int
    """The inbox's unread count right after the change, of the entries up to ``head``."""
    head: Cursor

    @property
    def updated(self) -> int:
        """How many entries changed."""
        return len(self.changed)


def entry_from_row(row: Any) -> Entry:
    """The API shape of an entry joined with its notification."""
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


def _not_expired(now: datetime) -> Any:
    return _entries.c.expires_at.is_(None) | (_entries.c.expires_at > now)


def visible_entries(app_id: str, user_id: str, epoch: int, *conditions: Any) -> Any:
    """Unexpired entries of one inbox epoch, joined with their notifications, filtered by ``conditions``."""
    return (
        select(*ENTRY_COLUMNS)
        .join(_notifications, _notifications.c.id == _entries.c.notification_id)
        .where(
            _entries.c.app_id == app_id,
            _entries.c.user_id == user_id,
            _entries.c.epoch == epoch,
            _not_expired(utcnow()),
            *conditions,
        )
    )


def _unread_query(app_id: str, user_id: str, up_to_seq: int | None = None) -> Any:
    query = (
        select(func.count())
        .select_from(_entries)
        .where(
            _entries.c.app_id == app_id,
            _entries.c.user_id == user_id,
            _entries.c.read_at.is_(None),
            _entries.c.archived_at.is_(None),
            _not_expired(utcnow()),
        )
    )
    return query.where(_entries.c.seq <= up_to_seq) if up_to_seq is not None else query


class InboxStore(Store):
    """Reads of one inbox, its read state, and erasing it."""

    async def head(self, app_id: str, user_id: str) -> Cursor:
        """The cursor after the newest entry of an inbox (seq 0 when it is empty)."""
        async with self._read() as connection:
            head, _floor = await self._position(connection, app_id, user_id)
            return head

    async def head_and_floor(self, app_id: str, user_id: str) -> tuple[Cursor, int]:
        """The head, and the seq up to which retention removed this epoch's entries."""
        async with self._read() as connection:
            return await self._position(connection, app_id, user_id)

    @staticmethod
    async def _position(connection: AsyncConnection, app_id: str, user_id: str) -> tuple[Cursor, int]:
        row = (
            await connection.execute(
                select(_counters.c.epoch, _counters.c.seq, _counters.c.floor_seq).where(
                    _counters.c.app_id == app_id, _counters.c.user_id == user_id
                )
            )
        ).first()
        if row is None:
            return Cursor(FIRST_EPOCH, 0), 0
        return Cursor(row.epoch, row.seq), int(row.floor_seq)

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

    async def unread_count(self, app_id: str, user_id: str, up_to_seq: int | None = None) -> int:
        """Entries not read, not archived and not expired (only those with seq <= ``up_to_seq``
        when given, so a device can add what arrives after that seq itself)."""
        async with self._read() as connection:
            return int((await connection.execute(_unread_query(app_id, user_id, up_to_seq))).scalar_one())

    async def unread_and_head(self, app_id: str, user_id: str) -> tuple[int, Cursor]:
        """The unread count as of the head, and the head, read together (a device that starts
        polling from that head adds what comes after it, as after a ``ready`` frame)."""
        async with self._read() as connection:
            head, _floor = await self._position(connection, app_id, user_id)
            unread = (await connection.execute(_unread_query(app_id, user_id, head.seq))).scalar_one()
            return int(unread), head

    async def entries_after(
        self, app_id: str, user_id: str, epoch: int, after_seq: int, limit: int, *, up_to: int | None = None
    ) -> list[Entry]:
        """Up to ``limit`` visible entries of ``epoch`` with ``after_seq < seq [<= up_to]``, in seq order."""
        conditions = [_entries.c.seq > after_seq]
        if up_to is not None:
            conditions.append(_entries.c.seq <= up_to)
        async with self._read() as connection:
            rows = await connection.execute(
                visible_entries(app_id, user_id, epoch, *conditions).order_by(_entries.c.seq).limit(limit)
            )
            return [entry_from_row(row) for row in rows]

    async def page_before(
        self, app_id: str, user_id: str, before: Cursor, limit: int, only: EntryFilter = NO_FILTER
    ) -> Page:
        """History: entries with seq <= ``before.seq`` in its epoch, newest first.

        ``next_cursor`` continues with older entries; ``truncated`` is never set (history
        simply ends where retention cut it).
        """
        async with self._read() as connection:
            rows = (
                await connection.execute(
                    visible_entries(app_id, user_id, before.epoch, _entries.c.seq <= before.seq, *only.conditions())
                    .order_by(_entries.c.seq.desc())
                    .limit(limit + 1)
                )
            ).all()
        items = [entry_from_row(row) for row in rows[:limit]]
        next_cursor = Cursor(before.epoch, items[-1].seq - 1) if items else before
        return Page(items=items, next_cursor=next_cursor, has_more=len(rows) > limit, truncated=False)

    async def page_after(
        self, app_id: str, user_id: str, after: Cursor | None, limit: int, only: EntryFilter = NO_FILTER
    ) -> Page:
        """A polling page: entries after ``after`` (the start of the inbox when ``None``).

        The caller has checked that ``after`` is of the inbox's current epoch.
        """
        after_seq = after.seq if after is not None else 0
        async with self._read() as connection:
            head, floor = await self._position(connection, app_id, user_id)
            epoch = after.epoch if after is not None else head.epoch
            rows = (
                await connection.execute(
                    # Only the cursor's epoch: an erase between the caller's epoch check and
                    # this read must not hand an old cursor entries of the new inbox.
                    visible_entries(app_id, user_id, epoch, _entries.c.seq > after_seq, *only.conditions())
                    .order_by(_entries.c.seq)
                    .limit(limit + 1)
                )
            ).all()
        # Retention removed entries this cursor had not seen yet.
        truncated = after is not None and after.epoch == head.epoch and after.seq < floor
        items = [entry_from_row(row) for row in rows[:limit]]
        has_more = len(rows) > limit
        if items:
            next_cursor = Cursor(epoch, items[-1].seq)
        else:
            next_cursor = after if after is not None else head
        return Page(items=items, next_cursor=next_cursor, has_more=has_more, truncated=truncated)

    async def change_state(
        self,
        app_id: str,
        user_id: str,
        epoch: int,
        action: StateAction,
        *,
        ids: Sequence[str] | None = None,
        up_to: int | None = None,
    ) -> StateChange:
        """Mark entries of ``epoch`` read / unread / archived / unarchived.

        Either by notification ``ids`` or every entry with seq <= ``up_to``. Entries already
        in that state are left alone (their timestamp is kept). The unread count and the head
        are read in the same transaction, so the count pushed with the change is the one
        right after it.
        """
        column = _entries.c[_STATE_COLUMN[action]]
        at = utcnow() if action in _STATE_SETS else None
        selected = [
            _entries.c.app_id == app_id,
            _entries.c.user_id == user_id,
            _entries.c.epoch == epoch,
            _not_expired(utcnow()),  # hidden entries stay as they are, as everywhere else
        ]
        if ids is not None:
            selected.append(_entries.c.notification_id.in_(list(ids)))
        if up_to is not None:
            selected.append(_entries.c.seq <= up_to)
        selected.append(column.is_(None) if at is not None else column.is_not(None))
        async with self._write() as connection:
            changed = list(
                (
                    await connection.execute(
                        update(_entries).where(*selected).values({column.name: at}).returning(_entries.c.notification_id)
                    )
                ).scalars()
            )
            # The count is as of the head: a device adds entries after it as they arrive.
            head, _floor = await self._position(connection, app_id, user_id)
            unread = int((await connection.execute(_unread_query(app_id, user_id, head.seq))).scalar_one())
        return StateChange(action=action, at=at, changed=changed, unread=unread, head=head)

    async def erase_inbox(self, app_id: str, user_id: str) -> Cursor:
        """Delete every entry of an inbox and start a new epoch; return the new head.

        Cursors of the old epoch are then recognised (``cursor_reset``); the next entry
        is seq 1 of the new epoch. The counter row is moved first: that takes its lock,
        so an in-flight fan-out to this user (which holds it) commits before the delete
        runs and its entry is deleted too, and both take their locks in the same order.
        """
        async with self._write() as connection:
            upsert = self._insert(_counters).values(
                app_id=app_id, user_id=user_id, epoch=FIRST_EPOCH + 1, seq=0, floor_seq=0
            )
            upsert = upsert.on_conflict_do_update(
                index_elements=[_counters.c.app_id, _counters.c.user_id],
                set_={"epoch": _counters.c.epoch + 1, "seq": 0, "floor_seq": 0},
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
