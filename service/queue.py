"""Enqueueing arq jobs by name; the service never imports the workers."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from redis.exceptions import RedisError

from service.errors import BrokerUnavailable

if TYPE_CHECKING:
    from arq.connections import ArqRedis


class JobName(StrEnum):
    """Every job a worker registers; ``tests/test_job_names.py`` keeps the two sides in step."""

    DELIVER = "deliver_notification"
    """Fan one notification out (inline for one chunk, else as chunk jobs)."""
    DELIVER_CHUNK = "deliver_chunk"
    """Store and publish one chunk of at most ``fanout_chunk`` recipients."""


def deliver_job_id(prefix: str, notification_id: str) -> str:
    """The arq job id of a notification's fan-out (dedupes while the job is queued or running)."""
    return f"{prefix}:deliver:{notification_id}"


def chunk_job_id(prefix: str, notification_id: str, index: int) -> str:
    """The arq job id of one chunk of a fan-out, named after the notification."""
    return f"{prefix}:deliver:{notification_id}:{index}"


def queue_for(queue_name: str, priority: str) -> str:
    """The arq queue of a priority: ``high`` has its own, so a backlog of normal ones never delays it."""
    return f"{queue_name}:high" if priority == "high" else queue_name


async def enqueue_delivery(
    arq: ArqRedis,
    queue_name: str,
    prefix: str,
    notification_id: str,
    priority: str = "normal",
    *,
    defer_until: datetime | None = None,
) -> None:
    """Enqueue the fan-out of a stored notification (to run at ``defer_until`` for a scheduled
    one); raise BrokerUnavailable if Redis is down."""
    try:
        await arq.enqueue_job(
            JobName.DELIVER,
            notification_id,
            _job_id=deliver_job_id(prefix, notification_id),
            _queue_name=queue_for(queue_name, priority),
            _defer_until=defer_until,
        )
    except (RedisError, OSError) as exc:
        raise BrokerUnavailable(f"could not enqueue: {exc}") from exc
