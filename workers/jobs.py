"""arq job functions: thin shells over ``service.delivery``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from arq import Retry
from redis.exceptions import RedisError

from service.broker.base import Publisher
from service.delivery import chunks, deliver_all
from service.delivery import deliver_chunk as deliver_chunk_of
from service.errors import BrokerUnavailable, StoreUnavailable
from service.queue import JobName, chunk_job_id, enqueue_delivery, queue_for
from service.settings import Settings
from service.store.access import utcnow
from service.store.repository import Repository
from service.store.retention import RetentionStore

log = logging.getLogger("tidings.worker")

MAX_TRIES = 5000
"""Enough tries, with the backoff below, to outlast a database outage of hours."""


RETRY_CAP_S = 5.0
"""Longest wait between two tries while the database is down: once it is back, delivery
resumes within this (the retries are not failures; MAX_TRIES outlasts hours)."""


def retry_delay_s(job_try: int) -> float:
    """Backoff between tries of a job that met an unavailable database."""
    return float(min(RETRY_CAP_S, 0.25 * 2 ** min(job_try, 10)))


def _retry(ctx: dict[str, Any], exc: StoreUnavailable) -> Retry:
    delay = retry_delay_s(int(ctx.get("job_try", 1)))
    log.warning("database unavailable (%s); retrying in %.1fs", exc.detail, delay)
    return Retry(defer=delay)


async def deliver_notification(ctx: dict[str, Any], notification_id: str) -> str:
    """Fan a notification out: inline for one chunk, else one chunk job per chunk."""
    async with _failing_on_bugs(ctx, notification_id):
        return await _deliver_notification(ctx, notification_id)


async def deliver_chunk(ctx: dict[str, Any], notification_id: str, index: int) -> str:
    """Store and publish chunk ``index`` of a notification's recipients."""
    async with _failing_on_bugs(ctx, notification_id):
        return await _deliver_chunk(ctx, notification_id, index)


@asynccontextmanager
async def _failing_on_bugs(ctx: dict[str, Any], notification_id: str) -> AsyncIterator[None]:
    """A job that cannot succeed by retrying marks its notification ``failed`` with the reason."""
    try:
        yield
    except (Retry, StoreUnavailable, BrokerUnavailable, RedisError, OSError, asyncio.CancelledError):
        raise  # transient: retried, or re-driven by the sweeper while the row stays accepted
    except Exception as exc:  # noqa: BLE001 - the job boundary: record why, then let arq log it
        reason = f"{type(exc).__name__}: {exc}"[:500]
        log.exception("delivery of %s failed: %s", notification_id, reason)
        try:
            await ctx["repository"].mark_failed(notification_id, reason)
        except StoreUnavailable:
            pass
        raise


async def _deliver_notification(ctx: dict[str, Any], notification_id: str) -> str:
    settings: Settings = ctx["settings"]
    repository: Repository = ctx["repository"]
    try:
        notification = await repository.start(notification_id)  # resolves a topic, once
        if notification is None or notification.status != "accepted":
            return "skipped"  # cancelled, finished, or not yet due (the sweeper brings it back then)
        parts = chunks(notification.recipients, settings.fanout_chunk)
        if len(parts) == 1:
            await deliver_chunk_of(repository, ctx["publisher"], settings.channel_prefix, notification, parts[0])
            return "delivered"
    except StoreUnavailable as exc:
        raise _retry(ctx, exc) from exc
    for index in range(len(parts)):
        await ctx["redis"].enqueue_job(
            JobName.DELIVER_CHUNK,
            notification_id,
            index,
            _job_id=chunk_job_id(settings.channel_prefix, notification_id, index),
            _queue_name=queue_for(settings.queue_name, notification.priority),
        )
    return f"{len(parts)} chunks"


async def _deliver_chunk(ctx: dict[str, Any], notification_id: str, index: int) -> str:
    settings: Settings = ctx["settings"]
    repository: Repository = ctx["repository"]
    try:
        notification = await repository.get_notification(notification_id)
        if notification is None or notification.status != "accepted":
            return "skipped"
        parts = chunks(notification.recipients, settings.fanout_chunk)
        if index >= len(parts):
            return "skipped"
        count = await deliver_chunk_of(
            repository, ctx["publisher"], settings.channel_prefix, notification, parts[index]
        )
    except StoreUnavailable as exc:
        raise _retry(ctx, exc) from exc
    return f"{count} entries"


async def _overdue(settings: Settings, repository: Repository) -> list[tuple[str, str]]:
    """(id, priority) of what the sweeper re-drives: ``accepted`` too long, or ``scheduled`` and due."""
    return (
        await repository.stale_accepted(timedelta(seconds=settings.sweep_after_s))
        + await repository.due_scheduled()
    )


async def sweep(ctx: dict[str, Any]) -> int:
    """Re-enqueue notifications still ``accepted`` after a while (their job may be lost), and
    scheduled ones that are due (the store, not Redis, is the truth about what is scheduled)."""
    settings: Settings = ctx["settings"]
    repository: Repository = ctx["repository"]
    try:
        stale = await _overdue(settings, repository)
    except StoreUnavailable as exc:
        log.warning("sweep skipped: %s", exc.detail)
        return 0
    for notification_id, priority in stale:
        await enqueue_delivery(ctx["redis"], settings.queue_name, settings.channel_prefix, notification_id, priority)
    if stale:
        log.info("sweeper re-enqueued %d notifications", len(stale))
    return len(stale)


async def sweep_without_queue(settings: Settings, repository: Repository, publisher: Publisher) -> int:
    """Redis is down, so no job can run: fan out, straight from the store, what the sweeper would
    re-enqueue. Publishing fails too; connected devices get the entries from the gateways'
    positioning pass. Idempotent, like every fan-out: a job that survives the outage finds them."""
    try:
        due = await _overdue(settings, repository)
        for notification_id, _priority in due:
            await deliver_all(repository, publisher, settings.channel_prefix, notification_id, settings.fanout_chunk)
    except StoreUnavailable as exc:
        log.warning("sweep without the queue stopped: %s", exc.detail)
        return 0
    if due:
        log.warning("queue unreachable: delivered %d waiting notifications from the store", len(due))
    return len(due)


RETENTION_BATCH = 1000
"""Rows deleted per transaction: short locks, so deliveries are not held up."""
RETENTION_BUDGET_S = 20.0
"""Time one retention run may take; what is left waits for the next run."""


async def retention(ctx: dict[str, Any]) -> int:
    """Delete entries older than ``TIDINGS_RETENTION_DAYS`` (and what only they needed), in batches."""
    settings: Settings = ctx["settings"]
    store: RetentionStore = ctx["retention"]
    cutoff = utcnow() - timedelta(days=settings.retention_days)
    deadline = asyncio.get_running_loop().time() + RETENTION_BUDGET_S
    removed = 0
    try:
        while asyncio.get_running_loop().time() < deadline:
            purged = await store.purge_batch(cutoff, RETENTION_BATCH)
            removed += purged.total
            if purged.total == 0:
                break
    except StoreUnavailable as exc:
        log.warning("retention paused: %s", exc.detail)
    if removed:
        log.info("retention removed %d rows older than %s", removed, cutoff.isoformat())
    return removed
