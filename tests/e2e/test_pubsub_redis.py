"""A separate pub/sub Redis (TIDINGS_PUBSUB_REDIS_URL), and a gateway whose pub/sub Redis is down."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.devices import Device, poll, send, token
from tests.harness import Deployment, RedisServer, Service, Worker, free_port, running

pytestmark = pytest.mark.e2e


@pytest.fixture
def pubsub_redis() -> RedisServer:
    server = RedisServer(free_port(), Path(tempfile.mkdtemp(prefix="tidings-pubsub-")))
    server.start()
    yield server
    server.stop()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_live_push_goes_through_the_separate_pubsub_redis(deployment: Deployment, pubsub_redis: RedisServer) -> None:
    # A long positioning interval: only a live publish can deliver within the test's deadline.
    env = {"TIDINGS_PUBSUB_REDIS_URL": pubsub_redis.url, "TIDINGS_POSITIONING_INTERVAL_S": "120"}
    service, worker = Service(deployment, **env), Worker(deployment, **env)
    with running(service, worker):
        await service.wait_ready_async()
        device = await Device.connect(service.ws_url, token("ivy"))
        started = time.monotonic()
        await send(service.url, ["ivy"], "via the pubsub redis")
        (entry,) = await device.wait_notifications(1, timeout=5)
        assert entry["title"] == "via the pubsub redis" and time.monotonic() - started < 5
        await device.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_stream_opened_while_pubsub_is_down_is_closed_promptly_and_polling_works(
    deployment: Deployment, pubsub_redis: RedisServer
) -> None:
    service = Service(deployment, TIDINGS_PUBSUB_REDIS_URL=pubsub_redis.url)
    with running(service):
        await service.wait_ready_async()
        pubsub_redis.stop()
        started = time.monotonic()
        async with connect(service.ws_url, open_timeout=5, ping_interval=None) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token("jack")}))
            error = json.loads(await asyncio.wait_for(ws.recv(), 10))
            await asyncio.wait_for(ws.wait_closed(), 5)
        assert error["type"] == "error" and error["code"] == "unavailable"
        assert ws.close_code == 1012
        assert time.monotonic() - started < 8, "the client was left hanging"
        assert (await poll(service.url, token("jack"))).status_code == 200
