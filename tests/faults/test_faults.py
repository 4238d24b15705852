"""Fault tests: a steady producer, SDK devices, and one real fault each; nothing may be lost.

Every fault is injected into a server this test started (its own redis-server,
its own service and worker processes) or through a proxy it owns (the balancer
in front of the services, the path to PostgreSQL) — never into the machine's
shared Redis or PostgreSQL. After each fault the applications' books and the
inboxes are compared with what was accepted: lost, duplicated and out of order
must all be 0. Each test prints those counts and every device's recovery time:
from the fault's start until the last entry it held up (over 1 s from 202 to
the application) arrived; also the worst such delay and, for a device that lost
its connection, when it delivered again. Run with ``-s`` to see them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from tidings_client import ConnectionState

from tests.conftest import PG_SKIP_REASON, PG_URL, _pg_admin, _pg_url
from tests.devices import token
from tests.faults.rig import PING_S, CloseLog, Rig, report, rig
from tests.harness import Worker
from tests.proxy import Proxy

pytestmark = pytest.mark.e2e

USERS = ["ann", "bob", "cai", "dee"]
WARM_S = 2.0
"""Producing before the fault."""
AFTER_S = 3.0
"""Producing after the fault (or after it healed)."""


@pytest.fixture
async def sqlite_rig() -> AsyncIterator[Rig]:
    async with rig(None, None) as the_rig:
        yield the_rig


@pytest.fixture
def close_log() -> AsyncIterator[CloseLog]:
    handler = CloseLog()
    logger = logging.getLogger("tidings_client")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


async def run_fault(the_rig: Rig, name: str, inject: Callable[[], Awaitable[object]], *, extra: str = "") -> float:
    """Devices live, produce, inject (and heal), produce, settle, judge; the worst recovery time."""
    if not the_rig.devices:
        await the_rig.connect_devices(USERS)
    the_rig.start_producer(USERS)
    await asyncio.sleep(WARM_S)
    started = time.monotonic()
    await inject()
    await asyncio.sleep(AFTER_S)
    await the_rig.stop_producer()
    await the_rig.settle()
    verdicts = await the_rig.verdict(started)
    report(name, verdicts, the_rig, extra)
    assert the_rig.accepted, "the producer never got a notification accepted"
    for verdict in verdicts:
        assert verdict.expected > 0 and verdict.clean, verdict
    await assert_all_delivered(the_rig)
    return max(v.recovery_s for v in verdicts)


async def assert_all_delivered(the_rig: Rig) -> None:
    """Every accepted notification ends ``delivered``: none was counted as failed on the way."""
    async with httpx.AsyncClient(timeout=10, headers={"Authorization": "Bearer test-api-key"}) as client:
        for accepted in the_rig.accepted.values():
            status = (await client.get(f"{the_rig.url}/v1/notifications/{accepted.id}")).json()
            assert status["status"] == "delivered", status


def left_live(the_rig: Rig, since: float) -> list[str]:
    """Users whose device went through any state but LIVE after ``since``."""
    return [d.user for d in the_rig.devices if any(at > since and s is not ConnectionState.LIVE for at, s in d.states)]


# -- Redis ---------------------------------------------------------------------------------


async def test_redis_restart(sqlite_rig: Rig) -> None:
    async def restart() -> float:
        await asyncio.to_thread(sqlite_rig.redis.stop)
        await asyncio.to_thread(sqlite_rig.redis.start)  # empty: the queue and subscriptions are gone
        return time.monotonic()

    await run_fault(sqlite_rig, "redis restarted", restart)
    assert all(worker.alive() for worker in sqlite_rig.workers), "a worker did not survive the restart"


async def test_redis_stopped_for_ten_seconds(sqlite_rig: Rig) -> None:
    polls: list[int] = []

    async def outage() -> float:
        await asyncio.to_thread(sqlite_rig.redis.stop)
        stopped = time.monotonic()
        while time.monotonic() - stopped < 10:
            async with httpx.AsyncClient(timeout=5) as client:
                answer = await client.get(f"{sqlite_rig.url}/v1/me/notifications",
                                          headers={"Authorization": f"Bearer {token('ann')}"})
            polls.append(answer.status_code)
            await asyncio.sleep(1.0)
        await asyncio.to_thread(sqlite_rig.redis.start)
        return time.monotonic()

    await run_fault(sqlite_rig, "redis stopped 10 s", outage)
    assert polls and set(polls) == {200}, f"polling failed while Redis was down: {polls}"
    assert any(a.degraded for a in sqlite_rig.accepted.values()), "no 202 was marked degraded while Redis was down"
    assert all(worker.alive() for worker in sqlite_rig.workers)


# -- the database --------------------------------------------------------------------------


@pytest.mark.pg
async def test_postgresql_stopped_for_ten_seconds() -> None:
    """With notifications queued when the database goes, the worker's jobs retry (not fail)
    until it is back; polling answers 503 with Retry-After meanwhile; sockets stay up."""
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    async with rig(_pg_admin, _pg_url) as the_rig:
        await the_rig.connect_devices(USERS)
        polls: list[tuple[int, str | None]] = []
        assert the_rig.database_proxy is not None
        database: Proxy = the_rig.database_proxy
        cut_at = 0.0
        worker: Worker | None = None

        async def outage() -> None:
            nonlocal cut_at, worker
            # A backlog that only the worker can deliver: accepted and queued, not yet stored.
            await asyncio.to_thread(the_rig.workers[0].stop, 15)
            await asyncio.sleep(1.0)
            database.cut()
            cut_at = time.monotonic()
            worker = the_rig.start_worker()  # its jobs meet a database that does not answer
            while time.monotonic() - cut_at < 10:
                async with httpx.AsyncClient(timeout=5) as client:
                    answer = await client.get(f"{the_rig.url}/v1/me/notifications",
                                              headers={"Authorization": f"Bearer {token('ann')}"})
                polls.append((answer.status_code, answer.headers.get("Retry-After")))
                await asyncio.sleep(1.0)
            database.restore()

        await run_fault(the_rig, "postgresql stopped 10 s", outage)
        assert polls and all(code == 503 and retry for code, retry in polls[1:]), polls
        assert not left_live(the_rig, cut_at), "a socket was dropped while the database was down"
        assert worker is not None and "retrying" in worker.output(), "no job met the outage"


# -- workers -------------------------------------------------------------------------------


async def test_worker_sigkill(sqlite_rig: Rig) -> None:
    async def kill() -> float:
        victim = sqlite_rig.workers[0]
        await asyncio.to_thread(victim.kill)
        at = time.monotonic()
        sqlite_rig.start_worker()  # what a supervisor does
        return at

    await run_fault(sqlite_rig, "worker SIGKILL", kill)


async def test_worker_sigterm_finishes_or_hands_back_its_jobs(sqlite_rig: Rig) -> None:
    took = 0.0

    async def terminate() -> float:
        nonlocal took
        victim = sqlite_rig.workers[0]
        at = time.monotonic()
        code = await asyncio.to_thread(victim.stop, 15)
        took = time.monotonic() - at
        assert code == 0, victim.output()[-2000:]
        sqlite_rig.start_worker()
        return at

    await run_fault(sqlite_rig, "worker SIGTERM", terminate)
    assert took < 2 + 1 + 3, f"the worker took {took:.1f} s to stop (job timeout 2 s + 1 s)"


# -- service instances ---------------------------------------------------------------------


async def test_service_sigterm_drains_with_1012(sqlite_rig: Rig, close_log: CloseLog) -> None:
    async def terminate() -> float:
        victim = sqlite_rig.services[0]
        at = time.monotonic()
        await asyncio.to_thread(victim.stop, 15)
        return at

    recovery = await run_fault(sqlite_rig, "service SIGTERM", terminate)
    moved = [line for line in close_log.lines if "closed (1012" in line]
    assert moved, f"no device saw 1012: {close_log.lines}"
    assert recovery < 10


async def test_service_sigkill_found_by_heartbeat(sqlite_rig: Rig) -> None:
    async def vanish() -> float:
        victim = sqlite_rig.services[1]
        assert sqlite_rig.balancer is not None
        sqlite_rig.balancer.blackhole(victim.port)  # no FIN, no RST: only heartbeats can tell
        await asyncio.to_thread(victim.kill)
        return time.monotonic()

    recovery = await run_fault(sqlite_rig, "service SIGKILL (silent host)", vanish)
    # Found within two ping intervals (plus the reconnect and replay).
    assert recovery < 2 * PING_S + 5


# -- devices and the network ---------------------------------------------------------------


async def test_a_device_that_stops_reading(sqlite_rig: Rig) -> None:
    """The device's socket stops draining (its own path is frozen) while big entries pile up:
    the server drops that stream, keeps its memory, and the device resumes without loss."""
    slow_path = Proxy([s.port for s in sqlite_rig.services], upstream_rcvbuf=4096).start()
    try:
        await sqlite_rig.connect_devices(USERS[:3])
        await sqlite_rig.connect_devices(["eve"], url=slow_path.url)
        blob = "x" * 200_000

        async def stall() -> float:
            slow_path.freeze()
            async with httpx.AsyncClient(timeout=10, headers={"Authorization": "Bearer test-api-key"}) as client:
                for number in range(40):
                    await sqlite_rig.send(client, ["eve"], f"big{number}", data={"blob": blob})
            # The server gives up on the stuck socket instead of holding 8 MB for it.
            await sqlite_rig.wait_until(lambda: streams_held(sqlite_rig) <= 3, 20, "the stuck stream dropped")
            slow_path.thaw()
            return time.monotonic()

        await run_fault(sqlite_rig, "a device stops reading", stall)
    finally:
        slow_path.stop()


def streams_held(the_rig: Rig) -> float:
    """The services' ``tidings_streams`` gauges, summed (long-polls included)."""
    total = 0.0
    for service in the_rig.services:
        for line in httpx.get(f"{service.url}/metrics", timeout=5).text.splitlines():
            if line.startswith("tidings_streams "):
                total += float(line.split()[-1])
    return total


async def test_websocket_upgrades_refused(sqlite_rig: Rig) -> None:
    """A proxy starts refusing WebSocket upgrades and drops the open ones: the devices fall back
    to long-poll and keep receiving, without loss."""
    assert sqlite_rig.balancer is not None
    balancer = sqlite_rig.balancer
    await sqlite_rig.connect_devices(USERS, retry_interval=600)

    async def refuse() -> float:
        balancer.refuse_upgrades = True
        balancer.cut()
        balancer.restore()
        at = time.monotonic()
        await sqlite_rig.wait_until(
            lambda: all(d.state() is ConnectionState.DEGRADED for d in sqlite_rig.devices), 20, "all degraded"
        )
        return at

    await run_fault(sqlite_rig, "WebSocket upgrades refused", refuse, extra="(devices on long-poll)")
    assert balancer.refused_upgrades >= len(USERS)
