"""The SDK's Subscriber against real processes: a killed and restarted service loses nothing."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from tidings_client import AsyncTidingsClient, Backoff, ConnectionState, Notification, Subscriber

from tests.devices import send, token, wait_delivered
from tests.harness import API_KEY, Deployment, Service, Worker, running

pytestmark = pytest.mark.e2e


async def test_subscriber_survives_a_killed_and_restarted_service(deployment: Deployment) -> None:
    gateway = Service(deployment)
    api = Service(deployment)
    worker = Worker(deployment)
    received: list[Notification] = []
    sent: list[str] = []
    with running(gateway, api, worker):
        await asyncio.gather(gateway.wait_ready_async(), api.wait_ready_async())
        async with AsyncTidingsClient(api.url, API_KEY) as producer:

            async def send(title: str) -> None:
                result = await producer.send(["hana"], "test", title)
                sent.append(result.id)

            subscriber = Subscriber(
                gateway.url, token=lambda: token("hana"), backoff=Backoff(base=0.05, cap=0.5), ping_interval=1.0
            )

            async def consume() -> None:
                async for notification in subscriber:
                    received.append(notification)

            consumer = asyncio.create_task(consume())
            try:
                await wait_until(lambda: subscriber.cursor is not None, 10)
                for i in range(2):
                    await send(f"before {i}")
                await wait_until(lambda: len(received) == 2, 10)

                gateway.kill()
                for i in range(3):
                    await send(f"while down {i}")
                for notification_id in sent:
                    await wait_delivered(api.url, notification_id)
                restarted = Service(deployment, port=gateway.port)
                with running(restarted):
                    await restarted.wait_ready_async()
                    await wait_until(lambda: len(received) == 5, 20)
                    for i in range(2):
                        await send(f"after {i}")
                    await wait_until(lambda: len(received) == 7, 10)
                    await asyncio.sleep(0.3)  # nothing more may arrive
            finally:
                await subscriber.close()
                consumer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await consumer
    # Each notification once, in seq order (jobs run concurrently, so seq order need not be send order).
    assert sorted(n.id for n in received) == sorted(sent) and len(received) == len(sent)
    assert [n.seq for n in received] == list(range(1, 8))


async def wait_until(predicate: object, timeout: float) -> None:
    async def poll() -> None:
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def test_the_sdk_refreshes_its_token_on_the_open_socket(deployment: Deployment) -> None:
    """Tokens of 2 s (the server allows 5 s of leeway): without a refresh the stream would end
    with 4001 after about 7 s; the SDK sends fresh ones and the one connection lives on."""
    service, worker = Service(deployment), Worker(deployment)
    minted: list[str] = []
    states: list[ConnectionState] = []

    def fresh_token() -> str:
        minted.append(token("tom", ttl_s=2))
        return minted[-1]

    with running(service, worker):
        await service.wait_ready_async()
        subscriber = Subscriber(service.url, fresh_token, on_connection_state=states.append,
                                backoff=Backoff(base=0.05, cap=0.5))
        titles: list[str] = []

        async def consume() -> None:  # an application iterating all along, as `async for` does
            async for notification in subscriber:
                titles.append(notification.title)

        async with subscriber:
            consumer = asyncio.create_task(consume())
            await asyncio.sleep(1.0)
            await send(service.url, ["tom"], "early")
            await asyncio.sleep(9.0)  # past the first token's expiry and leeway
            await send(service.url, ["tom"], "late")
            for _ in range(100):
                if titles == ["early", "late"]:
                    break
                await asyncio.sleep(0.1)
            assert titles == ["early", "late"]
        await asyncio.wait_for(consumer, 5)
        assert states.count(ConnectionState.CONNECTING) == 1, states
        assert len(minted) >= 3, "the token was not refreshed before it expired"
