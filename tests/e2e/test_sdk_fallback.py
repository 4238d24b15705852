"""The SDK's fallback ladder against real processes: a proxy that refuses WebSocket upgrades
sends the Subscriber to long-poll (DEGRADED) without losing anything, and once the proxy lets
upgrades through, the periodic retry takes it back to LIVE, again without loss or duplicates."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import pytest
from tidings_client import AsyncTidingsClient, Backoff, ConnectionState, Notification, Subscriber

from tests.devices import token
from tests.harness import API_KEY, Deployment, Service, Worker, running
from tests.proxy import Proxy

pytestmark = pytest.mark.e2e

USER = "fenna"


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    async def check() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    try:
        await asyncio.wait_for(check(), timeout)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_a_blocked_websocket_degrades_to_long_poll_and_comes_back_live(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    received: list[Notification] = []
    states: list[ConnectionState] = []
    sent: list[str] = []
    with running(service, worker), Proxy([service.port], refuse_upgrades=True) as proxy:
        await service.wait_ready_async()
        async with AsyncTidingsClient(service.url, API_KEY) as producer:

            async def send(title: str) -> None:
                sent.append((await producer.send([USER], "test", title)).id)

            # Old entries: a fresh subscriber starts from the head and must not replay them.
            for i in range(2):
                await send(f"old {i}")
            await wait_until(lambda: len(sent) == 2, 5, "the old sends")
            old = set(sent)

            subscriber = Subscriber(
                proxy.url, lambda: token(USER), on_connection_state=states.append,
                backoff=Backoff(base=0.05, cap=0.5), fallback_after=2, retry_interval=1.0, poll_wait=5,
            )

            async def consume() -> None:
                async for notification in subscriber:
                    received.append(notification)

            consumer = asyncio.create_task(consume())
            try:
                await wait_until(lambda: subscriber.state is ConnectionState.DEGRADED, 15, "DEGRADED")
                await asyncio.sleep(1.0)  # let old entries arrive, were they (wrongly) replayed
                sent.clear()
                for i in range(4):
                    await send(f"polled {i}")
                await wait_until(lambda: len(received) >= 4, 15, "4 entries by long-poll")
                # The periodic retry runs (and is refused) while polling goes on.
                await wait_until(lambda: proxy.refused_upgrades >= 4, 10, "two WebSocket retries")
                assert subscriber.degraded and subscriber.state is ConnectionState.DEGRADED

                # Keep sending across the switch back to the WebSocket.
                async def trickle() -> None:
                    for i in range(8):
                        await send(f"switch {i}")
                        await asyncio.sleep(0.15)

                producing = asyncio.create_task(trickle())
                await asyncio.sleep(0.3)
                proxy.refuse_upgrades = False
                await wait_until(lambda: subscriber.state is ConnectionState.LIVE, 10, "LIVE again")
                await producing
                for i in range(3):
                    await send(f"live {i}")
                await wait_until(lambda: len(received) >= 15, 15, "all 15 entries")
                await asyncio.sleep(0.5)  # nothing more may arrive
                assert subscriber.connected and not subscriber.degraded
            finally:
                await subscriber.close()
                consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer
    ids = [n.id for n in received]
    assert not old & set(ids), "the old inbox was replayed"
    assert len(ids) == len(set(ids)) == 15 and set(ids) == set(sent)
    # Each once, in seq order (jobs run concurrently: seq order need not be send order).
    seqs = [n.seq for n in received]
    assert seqs == list(range(3, 18))
    S = ConnectionState
    assert states == [S.CONNECTING, S.DISCONNECTED, S.CONNECTING, S.DISCONNECTED, S.DEGRADED, S.LIVE, S.CLOSED]
