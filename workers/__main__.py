"""``python -m workers``: run the arq workers configured from ``TIDINGS_*``, through Redis outages.

arq's ``Worker.main`` ends with an exception when its Redis connection drops. The
store holds the truth (the sweeper re-drives what a lost queue held), so this
process simply builds fresh workers and runs them again, after a jittered backoff,
until a signal asks it to stop. Between two attempts it does the sweeper's work
without the queue: what has waited too long is fanned out straight from the store,
so a notification accepted just before the outage is not held up for all of it.

On SIGTERM or SIGINT the workers stop taking jobs, the running ones get up to
``job_timeout_s`` to finish, and whatever is still running then is cancelled,
which arq re-queues (``retry_jobs``): finished or handed back, never dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import sys

from arq.worker import Worker
from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.aio import cancel_and_wait
from service.broker.redis import RedisPublisher
from service.logs import configure as configure_logging
from service.settings import ConfigError, Settings
from service.store.engine import Database
from service.store.repository import Repository
from workers.jobs import sweep_without_queue
from workers.settings import create_workers

log = logging.getLogger("tidings.worker")

RESTART_CAP_S = 5.0
"""Longest pause between two attempts to run the workers while Redis is down."""


def main() -> int:
    """Run until SIGINT/SIGTERM."""
    try:
        settings = Settings.from_env(os.environ)
        settings.require_redis("tidings worker")
    except ConfigError as exc:
        print(f"tidings worker: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, "worker")
    if settings.log_level != "debug":
        logging.getLogger("arq.worker").setLevel(logging.WARNING)  # a line per job drowns the rest
    asyncio.run(supervise(settings))
    return 0


async def supervise(settings: Settings) -> None:
    """Run the workers; rebuild them after a Redis failure; drain them on a signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    database = Database.connect(settings.database_url)
    # Its own connection, short timeouts: only used while the queue's Redis does not answer.
    publish_to = Redis.from_url(settings.pubsub_url or settings.require_redis("tidings worker"),
                                socket_connect_timeout=2, socket_timeout=2)
    failures = 0
    try:
        while not stop.is_set():
            workers = create_workers(settings, database)
            ran_for = loop.time()
            crashed = await _run_until_stop_or_crash(workers, stop, settings.job_timeout_s + 1)
            if crashed is None:
                return
            failures = 0 if loop.time() - ran_for > 30 else failures + 1
            delay = random.uniform(0, min(RESTART_CAP_S, 0.2 * 2**failures))
            log.warning("worker stopped (%s); restarting in %.1f s", crashed, delay)
            sweeping = asyncio.create_task(
                sweep_without_queue(settings, Repository(database), RedisPublisher(publish_to))
            )
            stopping = asyncio.create_task(stop.wait())
            await asyncio.wait([sweeping, stopping], return_when=asyncio.FIRST_COMPLETED)
            await cancel_and_wait(sweeping)  # done already, unless a signal came first
            await cancel_and_wait(stopping)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
    finally:
        await publish_to.aclose()
        await database.dispose()


async def _run_until_stop_or_crash(
    workers: tuple[Worker, ...], stop: asyncio.Event, drain_s: float
) -> BaseException | None:
    """Run the workers until ``stop`` (drain, return None) or one of them fails (return why)."""
    mains = [asyncio.create_task(worker.async_run(), name=f"arq-{worker.queue_name}") for worker in workers]
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([*mains, stopping], return_when=asyncio.FIRST_COMPLETED)
        if stopping in done:
            await _drain(workers, drain_s)
            return None
        failed = next(task for task in mains if task.done())
        return failed.exception() if not failed.cancelled() else asyncio.CancelledError()
    finally:
        stopping.cancel()
        for task in mains:
            task.cancel()
        await asyncio.gather(*mains, return_exceptions=True)
        for worker in workers:
            await _close(worker)


async def _drain(workers: tuple[Worker, ...], wait_s: float) -> None:
    """Take no new jobs; give the running ones ``wait_s`` to finish (the caller cancels the rest)."""
    for worker in workers:
        worker.allow_pick_jobs = False
    deadline = asyncio.get_running_loop().time() + wait_s
    while any(not task.done() for worker in workers for task in worker.tasks.values()):
        if asyncio.get_running_loop().time() >= deadline:
            break
        await asyncio.sleep(0.05)
    running = sum(not task.done() for worker in workers for task in worker.tasks.values())
    if running:  # _close cancels them, and arq re-queues a cancelled job
        log.warning("stopping: %d jobs still running are handed back to the queue", running)


async def _close(worker: Worker) -> None:
    """Close a worker's connections; with Redis gone that may fail, which changes nothing."""
    # Collect every job task's end here: arq's own gather stops at the first failure (a result
    # it could not write to a Redis that is gone) and leaves the others unretrieved.
    for task in worker.tasks.values():
        task.cancel()
    await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
    try:
        await worker.close()
    except (RedisError, OSError, asyncio.CancelledError) as exc:
        log.debug("closing %s: %s", worker.queue_name, exc)
        worker._pool = None  # noqa: SLF001 - arq offers no other way to drop a dead pool


if __name__ == "__main__":
    sys.exit(main())
