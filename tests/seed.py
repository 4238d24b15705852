"""Writing inbox state straight into the store, for tests that need a lot of it fast or need
entries that were never published (a lost publish, as the gateway sees it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from service.store.engine import Database
from service.store.repository import Delivered, NewNotification, Repository, new_notification_id
from service.store.tables import ErasedEntry, InboxCounter, InboxEntry, Notification


async def bulk_inbox(database_url: str, user: str, count: int, data: dict[str, Any]) -> None:
    """Give ``user`` entries seq 1..count (one notification each), in a few big statements."""
    database = Database.connect(database_url)
    now = datetime.now(UTC)
    try:
        async with database.writer.begin() as connection:
            for start in range(0, count, 2000):
                ids = [new_notification_id() for _ in range(start, min(count, start + 2000))]
                await connection.execute(
                    Notification.__table__.insert(),
                    [
                        {"id": nid, "app_id": "default", "type": "seed", "title": f"seed {start + i + 1}", "body": None,
                         "data": data, "priority": "normal", "status": "delivered", "reason": None,
                         "recipients": [user], "recipient_count": 1, "producer": "seed", "idempotency_key": None,
                         "request_hash": None, "created_at": now, "expires_at": None, "delivered_at": now}
                        for i, nid in enumerate(ids)
                    ],
                )
                await connection.execute(
                    InboxEntry.__table__.insert(),
                    [
                        {"app_id": "default", "user_id": user, "seq": start + i + 1, "epoch": 1, "notification_id": nid,
                         "created_at": now, "expires_at": None, "read_at": None, "archived_at": None}
                        for i, nid in enumerate(ids)
                    ],
                )
            await connection.execute(
                InboxCounter.__table__.insert().values(app_id="default", user_id=user, epoch=1, seq=count)
            )
    finally:
        await database.dispose()


async def unpublished_entry(database_url: str, user: str, title: str) -> Delivered:
    """Store one entry for ``user`` the way a worker does, but publish nothing."""
    database = Database.connect(database_url)
    try:
        repository = Repository(database)
        stored, _ = await repository.accept(
            NewNotification("default", "test", title, None, {}, "normal", [user], "seed", None, None)
        )
        (delivered,) = await repository.fan_out(stored, [user])
        return delivered
    finally:
        await database.dispose()


async def corrupt_notification(database_url: str, notification_id: str) -> None:
    """Make a stored notification impossible to deliver (a recipient that is not a user id)."""
    database = Database.connect(database_url)
    try:
        async with database.writer.begin() as connection:
            await connection.execute(
                update(Notification.__table__).where(Notification.__table__.c.id == notification_id).values(recipients=[None])
            )
    finally:
        await database.dispose()


async def bulk_accepted(database_url: str, user: str, count: int) -> list[str]:
    """Store ``count`` notifications to ``user`` as the API would (``accepted``), without queueing them."""
    database = Database.connect(database_url)
    now = datetime.now(UTC)
    ids = [new_notification_id() for _ in range(count)]
    try:
        async with database.writer.begin() as connection:
            await connection.execute(
                Notification.__table__.insert(),
                [
                    {"id": nid, "app_id": "default", "type": "backlog", "title": "backlog", "body": None, "data": {},
                     "priority": "normal", "status": "accepted", "reason": None, "recipients": [user],
                     "recipient_count": 1, "producer": "seed", "idempotency_key": None, "request_hash": None,
                     "created_at": now, "expires_at": None, "delivered_at": None}
                    for nid in ids
                ],
            )
    finally:
        await database.dispose()
    return ids


async def age_entries(database_url: str, user: str, up_to_seq: int, days: float) -> list[str]:
    """Make ``user``'s entries up to ``up_to_seq`` (and their notifications) ``days`` older;
    return their notification ids."""
    database = Database.connect(database_url)
    entries, notifications = InboxEntry.__table__, Notification.__table__
    try:
        async with database.writer.begin() as connection:
            rows = (
                await connection.execute(
                    select(entries.c.notification_id, entries.c.created_at).where(
                        entries.c.user_id == user, entries.c.seq <= up_to_seq
                    )
                )
            ).all()
            for row in rows:
                older = row.created_at - timedelta(days=days)
                await connection.execute(
                    update(entries).where(entries.c.notification_id == row.notification_id).values(created_at=older)
                )
                await connection.execute(
                    update(notifications).where(notifications.c.id == row.notification_id).values(created_at=older)
                )
        return [row.notification_id for row in rows]
    finally:
        await database.dispose()


async def tombstone(database_url: str, notification_id: str, user: str) -> None:
    """An erased-entry tombstone, as an inbox erase during a fan-out leaves one."""
    database = Database.connect(database_url)
    try:
        async with database.writer.begin() as connection:
            await connection.execute(
                ErasedEntry.__table__.insert().values(notification_id=notification_id, app_id="default", user_id=user)
            )
    finally:
        await database.dispose()


async def tombstones(database_url: str) -> int:
    """How many erased-entry tombstones the store holds."""
    database = Database.connect(database_url)
    try:
        async with database.reader.connect() as connection:
            return int((await connection.execute(select(func.count()).select_from(ErasedEntry.__table__))).scalar_one())
    finally:
        await database.dispose()
