"""Process start-up rules, and the sweeper that re-drives notifications whose job was lost."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.domain.cursor import Cursor
from service.store.engine import Database
from service.store.repository import NewNotification, Repository
from tests.devices import Device, poll, send, status, token, wait_delivered
from tests.harness import ROOT, Deployment, RedisServer, Service, Worker, free_port, running

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("command", [["-m", "service", "serve"], ["-m", "workers"]])
def test_serve_or_worker_without_a_redis_url_fails_saying_so(command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update({"PYTHONPATH": str(ROOT), "TIDINGS_JWT_SECRET": "s" * 40, "TIDINGS_API_KEY": "k"})
    result = subprocess.run([sys.executable, *command], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "TIDINGS_REDIS_URL is not set" in result.stderr and "make run" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_setting_stops_the_service_naming_it() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update({"PYTHONPATH": str(ROOT), "TIDINGS_PORT": "http"})
    result = subprocess.run([sys.executable, "-m", "service", "serve"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "TIDINGS_PORT" in result.stderr and "Traceback" not in result.stderr


async def test_the_sweeper_delivers_a_notification_whose_job_was_lost(deployment: Deployment) -> None:
    database = Database.connect(deployment.database_url)
    repository = Repository(database)
    try:
        # Stored as the API stores it, but never enqueued (as if Redis lost the job).
        stored, _ = await repository.accept(
            NewNotification("default", "test", "orphan", None, {}, "normal", ["mia"], "p", None, None)
        )
        service = Service(deployment)
        worker = Worker(deployment, TIDINGS_SWEEP_AFTER_S="1")
        with running(service, worker):
            await service.wait_ready_async()
            # From the start of the inbox: the sweeper may deliver before the device is connected.
            device = await Device.connect(service.ws_url, token("mia"), Cursor(1, 0).encode())
            await wait_delivered(service.url, stored.id, timeout=20)
            (entry,) = await device.wait_notifications(1)
            assert entry["id"] == stored.id
            await device.close()
    finally:
        await database.dispose()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_worker_delivers_from_the_store_while_redis_is_down(database_url: str, tmp_path: Path) -> None:
    """Accepted and queued just before Redis went away (the queue is gone with it): a worker
    that cannot reach Redis still fans it out from the store, not only once Redis is back."""
    redis = RedisServer(free_port(), tmp_path / "redis")
    redis.start()
    deployment = Deployment(redis_url=redis.url, database_url=database_url)
    service = Service(deployment, TIDINGS_SWEEP_AFTER_S="1")
    worker: Worker | None = None
    try:
        with running(service):
            await service.wait_ready_async()
            # No worker yet: the job waits in the queue, and the queue goes with Redis.
            accepted = (await send(service.url, ["rae"], "queued")).json()
            assert accepted["status"] == "accepted" and not accepted.get("degraded")
            await asyncio.to_thread(redis.stop)
            started = time.monotonic()
            worker = Worker(deployment, TIDINGS_SWEEP_AFTER_S="1")
            while True:  # polling reads SQL only: it works with Redis down
                items = (await poll(service.url, token("rae"))).json()["items"]
                if items:
                    break
                assert time.monotonic() - started < 20, worker.output()[-2000:]
                await asyncio.sleep(0.2)
            assert [item["id"] for item in items] == [accepted["id"]]
            assert (await status(service.url, accepted["id"]))["status"] == "delivered"
            assert worker.alive()
    finally:
        if worker is not None:
            worker.stop()
        redis.stop()
    print(f"\ndelivered {time.monotonic() - started:.1f} s after Redis stopped, with Redis still down")
