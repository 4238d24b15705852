"""``priority: high`` has its own queue: a backlog of normal notifications does not delay it."""

from __future__ import annotations

import asyncio
import time

import pytest
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool

from service.queue import enqueue_delivery
from tests.devices import Device, send, token
from tests.harness import Deployment, Service, Worker, running
from tests.seed import bulk_accepted

pytestmark = pytest.mark.e2e
BACKLOG = 10_000


async def test_a_high_priority_notification_overtakes_a_10000_backlog(deployment: Deployment) -> None:
    ids = await bulk_accepted(deployment.database_url, "backlogged", BACKLOG)
    arq = ArqRedis(connection_pool=ConnectionPool.from_url(deployment.redis_url))
    try:
        for notification_id in ids:  # queued before any worker runs: a real backlog
            await enqueue_delivery(arq, deployment.queue_name, deployment.prefix, notification_id)
        assert await arq.zcard(deployment.queue_name) == BACKLOG
    finally:
        await arq.aclose(close_connection_pool=True)
    service, worker = Service(deployment), Worker(deployment, TIDINGS_SWEEP_AFTER_S="3600")
    with running(service, worker):
        await service.wait_ready_async()
        device = await Device.connect(service.ws_url, token("yuri"))
        await send(service.url, ["yuri"], "normal, behind the backlog")
        started = time.monotonic()
        assert (await send(service.url, ["yuri"], "urgent", priority="high")).status_code == 202
        (entry,) = await device.wait_notifications(1, timeout=5)
        delay = time.monotonic() - started
        await asyncio.sleep(0.2)
        print(f"\nhigh priority delivered {delay * 1000:.0f} ms after its POST, behind a backlog of {BACKLOG}")
        assert entry["title"] == "urgent" and entry["priority"] == "high"
        assert delay < 1.0
        assert [e["title"] for e in device.notifications] == ["urgent"], "the normal one jumped the backlog"
        await device.close()
