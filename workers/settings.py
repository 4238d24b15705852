"""The arq worker's configuration, tuned for delivery latency and fast recovery."""

from __future__ import annotations

from typing import Any

from arq import cron
from arq.connections import RedisSettings
from arq.worker import Worker, func

from service.queue import JobName
from service.settings import Settings
from workers import context, jobs

SWEEP_EVERY_S = 5


def worker_kwargs(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for :class:`arq.worker.Worker`."""
    redis_url = settings.require_redis("tidings worker")
    return {
        "functions": [
            func(jobs.deliver_notification, name=JobName.DELIVER, max_tries=jobs.MAX_TRIES),
            func(jobs.deliver_chunk, name=JobName.DELIVER_CHUNK, max_tries=jobs.MAX_TRIES),
        ],
        "cron_jobs": [
            cron(jobs.sweep, name=f"{settings.queue_name}:sweep", second=set(range(0, 60, SWEEP_EVERY_S)), run_at_startup=True, unique=True)
        ],
        "queue_name": settings.queue_name,
        "redis_settings": RedisSettings.from_dsn(redis_url),
        "on_startup": context.startup,
        "on_shutdown": context.shutdown,
        "ctx": {"settings": settings},
        "poll_delay": settings.poll_delay_s,
        "job_timeout": settings.job_timeout_s,
        "keep_result": 0,
        "max_jobs": 20,
        "max_tries": jobs.MAX_TRIES,
        "health_check_interval": 30,
        "log_results": False,
    }


def create_worker(settings: Settings, **overrides: Any) -> Worker:
    """A worker whose killed jobs run again seconds later, not minutes."""
    worker = Worker(**{**worker_kwargs(settings), **overrides})
    # arq keeps a job's in-progress marker for job_timeout + 10 s; after a SIGKILL that
    # marker is what delays the re-run, so keep it just above the timeout.
    worker.in_progress_timeout_s = settings.job_timeout_s + 1
    return worker
