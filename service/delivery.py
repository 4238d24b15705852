"""The fan-out use case: store inbox entries, then publish them. Workers and the API share it."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from service.broker.base import Hint, Publisher
from service.domain.channels import inbox_channel
from service.domain.frames import notification_frame
from service.errors import BrokerUnavailable
from service.store.access import utcnow
from service.store.repository import Repository, StoredNotification

log = logging.getLogger("tidings.delivery")


def chunks(users: Sequence[str], size: int) -> list[list[str]]:
    """Split recipients into fan-out chunks of at most ``size``."""
    return [list(users[start : start + size]) for start in range(0, len(users), size)]


async def deliver_chunk(
    repository: Repository,
    publisher: Publisher,
    prefix: str,
    notification: StoredNotification,
    users: Sequence[str],
) -> int:
    """Store one chunk's entries (one transaction, which also marks the notification
    ``delivered`` once every recipient has an entry), then publish them. Safe to run again:
    returns the number of entries stored or found for this chunk."""
    delivered = await repository.fan_out(notification, users)
    if notification.expires_at is not None and notification.expires_at <= utcnow():
        return len(delivered)  # stored late, already expired: hidden everywhere, so not pushed either
    hints = [
        Hint(
            inbox_channel(prefix, notification.app_id, item.user_id),
            item.epoch,
            item.entry.seq,
            notification_frame(item.entry),
        )
        for item in delivered
    ]
    try:
        await publisher.publish(hints)
    except BrokerUnavailable as exc:
        # The entries are committed; gateways find them on their next positioning pass.
        log.warning("publish of %s failed, devices will catch up: %s", notification.id, exc.detail)
    return len(delivered)


async def deliver_all(
    repository: Repository, publisher: Publisher, prefix: str, notification_id: str, chunk_size: int
) -> None:
    """Fan a notification out chunk after chunk in this process (used when the queue is down)."""
    notification = await repository.start(notification_id)
    if notification is None or notification.status != "accepted":
        return
    for chunk in chunks(notification.recipients, chunk_size):
        await deliver_chunk(repository, publisher, prefix, notification, chunk)

