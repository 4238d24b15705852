"""Topic subscriptions: who receives a notification sent to ``recipients.topic``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from service.store.access import Store, utcnow
from service.store.tables import TopicSubscription

_subscriptions = TopicSubscription.__table__


@dataclass(frozen=True, slots=True)
class NamePage:
    """A page of names (user ids or topics) in ascending order."""

    items: list[str]
    has_more: bool


class TopicStore(Store):
    """Subscribe, unsubscribe and list, by topic or by user."""

    async def subscribe(self, app_id: str, topic: str, users: Sequence[str]) -> int:
        """Subscribe ``users`` to ``topic`` (already subscribed ones are left as they are).

        Returns how many were not subscribed before.
        """
        wanted = sorted(set(users))
        now = utcnow()
        async with self._write() as connection:
            result = await connection.execute(
                self._insert(_subscriptions)
                .values([{"app_id": app_id, "topic": topic, "user_id": user, "created_at": now} for user in wanted])
                .on_conflict_do_nothing()
            )
        return int(result.rowcount or 0)

    async def unsubscribe(self, app_id: str, topic: str, user_id: str) -> bool:
        """Remove one subscription; ``False`` when there was none."""
        async with self._write() as connection:
            result = await connection.execute(
                _subscriptions.delete().where(
                    _subscriptions.c.app_id == app_id,
                    _subscriptions.c.topic == topic,
                    _subscriptions.c.user_id == user_id,
                )
            )
        return bool(result.rowcount)

    async def subscribers(self, app_id: str, topic: str, after: str | None, limit: int) -> NamePage:
        """A topic's subscribers in user id order, after ``after``."""
        query = select(_subscriptions.c.user_id).where(
            _subscriptions.c.app_id == app_id, _subscriptions.c.topic == topic
        )
        if after is not None:
            query = query.where(_subscriptions.c.user_id > after)
        return await self._names(query.order_by(_subscriptions.c.user_id), limit)

    async def topics_of(self, app_id: str, user_id: str, after: str | None, limit: int) -> NamePage:
        """A user's topics in name order, after ``after``."""
        query = select(_subscriptions.c.topic).where(
            _subscriptions.c.app_id == app_id, _subscriptions.c.user_id == user_id
        )
        if after is not None:
            query = query.where(_subscriptions.c.topic > after)
        return await self._names(query.order_by(_subscriptions.c.topic), limit)

    async def _names(self, query: object, limit: int) -> NamePage:
        async with self._read() as connection:
            names = list((await connection.execute(query.limit(limit + 1))).scalars())  # type: ignore[attr-defined]
        return NamePage(items=names[:limit], has_more=len(names) > limit)
