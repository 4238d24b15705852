"""A service process that stops, and a device that stops answering: both are let go in bounded time."""

from __future__ import annotations

import asyncio
import json
import signal
import time

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.devices import Device, token
from tests.e2e.test_slow_device import gauge
from tests.harness import Deployment, Service, running
from tests.proxy import Proxy

pytestmark = pytest.mark.e2e

DRAIN_S = 2.0


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sigterm_closes_streams_with_1012_spread_over_the_drain_window(deployment: Deployment) -> None:
    service = Service(deployment, TIDINGS_DRAIN_S=str(DRAIN_S))
    with running(service):
        await service.wait_ready_async()
        devices = [await Device.connect(service.ws_url, token(f"d{i}")) for i in range(20)]
        async with httpx.AsyncClient(timeout=30) as client:
            waiting = asyncio.create_task(timed_long_poll(client, service.url))
            await asyncio.sleep(0.5)
            started = time.monotonic()
            service.process.send_signal(signal.SIGTERM)
            closed_at: list[float] = []

            async def closed(device: Device) -> None:
                while device.close_code is None:
                    await asyncio.sleep(0.01)
                closed_at.append(time.monotonic() - started)

            await asyncio.wait_for(asyncio.gather(*(closed(d) for d in devices)), DRAIN_S + 5)
            answer, answered_at = await asyncio.wait_for(waiting, DRAIN_S + 5)
            answered = answered_at - started
        exit_code = await asyncio.to_thread(service.process.wait, 15)
    assert {d.close_code for d in devices} == {1012}
    # Spread, not all at once: the devices reconnect elsewhere a few at a time.
    assert max(closed_at) - min(closed_at) >= DRAIN_S / 2, sorted(closed_at)
    assert max(closed_at) <= DRAIN_S + 1.5, sorted(closed_at)
    # The long-poll is answered (empty) as the drain starts, not cut off at the end.
    assert answer.status_code == 200 and answer.json()["items"] == [] and answered < 0.5, answered
    assert exit_code in (0, -signal.SIGTERM), service.output()[-2000:]


async def timed_long_poll(client: httpx.AsyncClient, base_url: str) -> tuple[httpx.Response, float]:
    """A ``wait=30`` long-poll, and the moment its answer came."""
    answer = await client.get(f"{base_url}/v1/me/notifications", params={"wait": "30"},
                              headers={"Authorization": f"Bearer {token('poller')}"})
    return answer, time.monotonic()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sigterm_answers_long_polls_on_an_api_instance_too(deployment: Deployment) -> None:
    """An ``api`` process has no hub: its long-polls must still answer at once, not be cut (500)."""
    service = Service(deployment, TIDINGS_ROLE="api", TIDINGS_DRAIN_S=str(DRAIN_S))
    with running(service):
        await service.wait_ready_async()
        async with httpx.AsyncClient(timeout=30) as client:
            waiting = asyncio.create_task(timed_long_poll(client, service.url))
            await asyncio.sleep(0.5)
            started = time.monotonic()
            service.process.send_signal(signal.SIGTERM)
            answer, answered_at = await asyncio.wait_for(waiting, 15)
    assert answer.status_code == 200 and answer.json()["items"] == [], answer.text
    assert answered_at - started < 1.5, answered_at - started


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_device_that_stops_answering_pings_is_dropped_within_two_intervals(deployment: Deployment) -> None:
    interval = 1.0
    service = Service(deployment, TIDINGS_PING_INTERVAL_S=str(interval))
    with running(service):
        await service.wait_ready_async()
        healthy = await Device.connect(service.ws_url, token("well"))
        silent = await Device.connect(service.ws_url, token("gone"))
        assert await gauge(service.url, "tidings_streams") == 2
        # Its TCP stays open, but nothing it receives is read, so no ping is ever answered.
        silent.ws.transport.pause_reading()
        started = time.monotonic()
        while await gauge(service.url, "tidings_streams") > 1:
            assert time.monotonic() - started < 2 * interval + 1.0, "the silent device is still held"
            await asyncio.sleep(0.05)
        dropped_after = time.monotonic() - started
        await asyncio.sleep(2 * interval)
        assert healthy.close_code is None, "a device that answers was dropped too"
        assert await gauge(service.url, "tidings_streams") == 1
        await healthy.close()
        silent.ws.transport.abort()
        await silent.close()
    print(f"\nsilent device dropped {dropped_after:.2f} s after it stopped answering (ping interval {interval} s)")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_stream_ends_with_4001_when_its_token_expires_unless_refreshed(deployment: Deployment) -> None:
    """Tokens of 1 s (the server allows 5 s of leeway): the device that never refreshes is closed
    with 4001 after about 6 s; the one that sent a fresh ``auth`` frame on its socket lives on."""
    service = Service(deployment, TIDINGS_PING_INTERVAL_S="1")
    with running(service):
        await service.wait_ready_async()
        started = time.monotonic()
        lapsing = await Device.connect(service.ws_url, token("ivy", ttl_s=1))
        refreshed = await Device.connect(service.ws_url, token("ivy", ttl_s=1))
        await asyncio.sleep(2)
        await refreshed.ws.send(json.dumps({"type": "auth", "token": token("ivy", ttl_s=3600)}))
        assert await lapsing.wait_closed(timeout=12) == 4001
        closed_after = time.monotonic() - started
        error = next(f for f in lapsing.frames if f["type"] == "error")
        assert error["code"] == "unauthorized" and "expired" in error["message"]
        await asyncio.sleep(2)
        assert refreshed.close_code is None, "a stream whose token was refreshed was closed"
        await refreshed.close()
    assert 5 <= closed_after <= 9, closed_after


@pytest.mark.parametrize("database_url", ["pg"], indirect=True)
async def test_a_stopping_instance_answers_its_long_polls_without_the_store(
    deployment: Deployment, database_url: str
) -> None:
    """The long-polls' answer on SIGTERM must not wait behind (or fail on) the store: here the
    database is cut off first, and the poll still gets its empty 200 at once."""
    path = Proxy([make_url(database_url).port or 5432]).start()
    through = make_url(database_url).set(port=path.port).render_as_string(hide_password=False)
    service = Service(deployment, TIDINGS_DATABASE_URL=through, TIDINGS_DRAIN_S=str(DRAIN_S))
    try:
        with running(service):
            await service.wait_ready_async()
            async with httpx.AsyncClient(timeout=30) as client:
                auth = {"Authorization": f"Bearer {token('poller')}"}
                head = (await client.get(f"{service.url}/v1/me/unread-count", headers=auth)).json()["cursor"]
                waiting = asyncio.create_task(client.get(
                    f"{service.url}/v1/me/notifications", params={"after": head, "wait": "30"}, headers=auth))
                await asyncio.sleep(0.5)
                path.cut()
                started = time.monotonic()
                service.process.send_signal(signal.SIGTERM)
                answer = await asyncio.wait_for(waiting, 15)
                answered = time.monotonic() - started
    finally:
        path.stop()
    assert answer.status_code == 200 and answer.json() == {
        "items": [], "next_cursor": head, "has_more": False, "truncated": False}, answer.text
    assert answered < 1.0, answered
