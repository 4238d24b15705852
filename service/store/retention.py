"""Retention: delete inbox entries older than the horizon, in bounded batches.

Entries go oldest first, per inbox as a prefix (every seq up to the newest old
one), and the inbox's ``floor_seq`` records how far: a cursor below it is then
answered ``truncated``. Tombstones of erased entries and notification rows go
once nothing refers to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, select, update

from service.store.access import Store
from service.store.tables import ErasedEntry, InboxCounter, InboxEntry, Notification

_notifications = Notification.__table__
_entries = InboxEntry.__table__
_counters = InboxCounter.__table__
_erased = ErasedEntry.__table__

_FINISHED = ("delivered", "cancelled", "failed")


@dataclass(frozen=True, slots=True)
class Purged:
    """What one retention batch removed."""

    entries: int
    notifications: int
    tombstones: int

    @property
    def total(self) -> int:
        """Rows removed in all."""
        return self.entries + self.notifications + self.tombstones


class RetentionStore(Store):
    """The deletes of the retention job."""

    def _larger(self, column: Any, value: int) -> Any:
        """SQL for the larger of ``column`` and ``value`` (SQLite spells it ``max``)."""
        return func.max(column, value) if self._db.dialect == "sqlite" else func.greatest(column, value)

    async def purge_batch(self, cutoff: datetime, batch: int) -> Purged:
        """Remove up to about ``batch`` rows created before ``cutoff``; call again while it removes any."""
        async with self._read() as connection:
            rows = (
                await connection.execute(
                    select(_entries.c.app_id, _entries.c.user_id, _entries.c.epoch, _entries.c.seq)
                    .where(_entries.c.created_at < cutoff)
                    .order_by(_entries.c.created_at)
                    .limit(batch)
                )
            ).all()
        newest_old: dict[tuple[str, str, int], int] = {}
        for row in rows:
            key = (row.app_id, row.user_id, row.epoch)
            newest_old[key] = max(newest_old.get(key, 0), row.seq)
        entries = 0
        if newest_old:
            async with self._write() as connection:
                # Counters in ascending order, as the fan-out takes them, so the two cannot deadlock.
                for (app_id, user_id, epoch), seq in sorted(newest_old.items()):
                    await connection.execute(
                        update(_counters)
                        .where(_counters.c.app_id == app_id, _counters.c.user_id == user_id, _counters.c.epoch == epoch)
                        .values(floor_seq=self._larger(_counters.c.floor_seq, seq))
                    )
                    result = await connection.execute(
                        _entries.delete().where(
                            _entries.c.app_id == app_id,
                            _entries.c.user_id == user_id,
                            _entries.c.epoch == epoch,
                            _entries.c.seq <= seq,
                        )
                    )
                    entries += int(result.rowcount or 0)
        tombstones = await self._purge_tombstones(batch)
        notifications = await self._purge_notifications(cutoff, batch)
        return Purged(entries=entries, notifications=notifications, tombstones=tombstones)

    async def _purge_tombstones(self, batch: int) -> int:
        """Tombstones only matter while their notification is still being delivered."""
        async with self._read() as connection:
            ids = list(
                (
                    await connection.execute(
                        select(_erased.c.notification_id)
                        .join(_notifications, _notifications.c.id == _erased.c.notification_id, isouter=True)
                        .where((_notifications.c.id.is_(None)) | (_notifications.c.status.in_(_FINISHED)))
                        .distinct()
                        .limit(batch)
                    )
                ).scalars()
            )
        if not ids:
            return 0
        async with self._write() as connection:
            result = await connection.execute(_erased.delete().where(_erased.c.notification_id.in_(ids)))
        return int(result.rowcount or 0)

    async def _purge_notifications(self, cutoff: datetime, batch: int) -> int:
        """Finished notifications past the horizon that no inbox holds any more."""
        still_held = exists().where(_entries.c.notification_id == _notifications.c.id)
        async with self._read() as connection:
            ids = list(
                (
                    await connection.execute(
                        select(_notifications.c.id)
                        .where(
                            and_(_notifications.c.created_at < cutoff, _notifications.c.status.in_(_FINISHED)),
                            ~still_held,
                        )
                        .limit(batch)
                    )
                ).scalars()
            )
        if not ids:
            return 0
        async with self._write() as connection:
            result = await connection.execute(
                _notifications.delete().where(_notifications.c.id.in_(ids), ~still_held)
            )
        return int(result.rowcount or 0)
