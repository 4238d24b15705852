"""The arq worker's configuration, tuned for delivery latency and fast recovery."""

from __future__ import annotations

from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker, func

from service.queue import JobName, queue_for
from service.settings import Settings
from service.store.engine import Database
from service.store.repository import Repository
from service.store.retention import RetentionStore
from workers import context, jobs

SWEEP_EVERY_S = 5
PLANNER_TIMEOUT_S = 60
MAX_JOBS = 8
"""Jobs one worker runs at once. A chunk job is CPU-bound (~0.1 s per 500 recipients): more at
once only stretches each one towards its timeout."""


def worker_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for :class:`arq.worker.Worker`."""
    redis_url = settings.require_redis("tidings worker")
    return {
        "functions": [
            # It only plans: resolves the recipients and enqueues the chunk jobs, which it shares the
            # event loop with; given the short chunk timeout it could be cut off half-way. Running
            # it twice is harmless (chunk jobs are named), so a long timeout costs nothing.
            func(jobs.deliver_notification, name=JobName.DELIVER, max_tries=jobs.MAX_TRIES, timeout=PLANNER_TIMEOUT_S),
            func(jobs.deliver_chunk, name=JobName.DELIVER_CHUNK, max_tries=jobs.MAX_TRIES),
        ],
        "cron_jobs": [
            cron(jobs.sweep, name=f"{settings.queue_name}:sweep", second=set(range(0, 60, SWEEP_EVERY_S)), run_at_startup=True, unique=True),
            cron(jobs.retention, name=f"{settings.queue_name}:retention", second=30, run_at_startup=True, unique=True, timeout=60),
        ],
        "queue_name": settings.queue_name,
        "redis_settings": RedisSettings.from_dsn(redis_url),
        "on_startup": context.startup,
        "on_shutdown": context.shutdown,
        "ctx": {"settings": settings},
        "poll_delay": settings.poll_delay_s,
        "job_timeout": settings.job_timeout_s,
        "keep_result": 0,
        "max_jobs": MAX_JOBS,
        "max_tries": jobs.MAX_TRIES,
        "health_check_interval": 30,
        "log_results": False,
    }


def create_workers(settings: Settings, database: Database) -> tuple[Worker, Worker]:
    """The normal-priority worker (with the cron jobs) and the high-priority one, sharing ``database``.

    Both run in one process (``workers.__main__`` drives them and handles the signals), so on
    SQLite their writes queue on one lock.
    """
    shared = {
        "settings": settings,
        "database": database,
        "repository": Repository(database),
        "retention": RetentionStore(database),
        "owns_database": False,
    }
    normal = create_worker(settings, ctx=dict(shared), handle_signals=False)
    high = create_worker(
        settings, ctx=dict(shared), queue_name=queue_for(settings.queue_name, "high"), cron_jobs=None,
        handle_signals=False,
    )
    return normal, high


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    """A worker whose killed jobs run again seconds later, not minutes."""
    worker = Worker(**{**worker_kwargs(settings), **overrides})
    # arq keeps a job's in-progress marker for job_timeout + 10 s; after a SIGKILL that
    # marker is what delays the re-run, so keep it just above the timeout.
    worker.in_progress_timeout_s = settings.job_timeout_s + 1
    return worker
