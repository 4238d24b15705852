"""``GET /v1/me/notifications?wait=N``: answers as soon as an entry arrives, holding no database
connection while it waits."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.devices import poll, producer_call, send, token, user_call, wait_delivered
from tests.harness import Deployment, Service, Worker, running

pytestmark = pytest.mark.e2e


async def test_a_long_poll_answers_when_the_entry_arrives_not_at_the_end(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url, user = service.url, token("lola")
        head = (await poll(url, user)).json()["next_cursor"]

        started = time.monotonic()
        empty = (await poll(url, user, after=head, wait=1)).json()
        assert empty["items"] == [] and empty["next_cursor"] == head
        assert 0.9 <= time.monotonic() - started < 3

        waiting = asyncio.create_task(poll(url, user, after=head, wait=20))
        await asyncio.sleep(1.0)
        assert not waiting.done()
        sent = time.monotonic()
        notification_id = (await send(url, ["lola"], "ping")).json()["id"]
        page = (await asyncio.wait_for(waiting, 20)).json()
        delay = time.monotonic() - sent
        assert [e["id"] for e in page["items"]] == [notification_id]
        assert delay < 5, f"answered {delay:.2f}s after the send"
        print(f"\nlong-poll answered {delay * 1000:.0f} ms after the send")
        # With the entry there already, no wait at all.
        started = time.monotonic()
        again = (await poll(url, user, after=head, wait=20)).json()
        assert [e["id"] for e in again["items"]] == [notification_id] and time.monotonic() - started < 2


async def test_waiting_long_polls_hold_no_database_connection(deployment: Deployment) -> None:
    """More waiting polls than the connection pool has connections: other requests still answer."""
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url = service.url
        users = [f"w{i:02d}" for i in range(40)]  # the pool holds at most 30 (10 + 20 overflow)
        waits = [asyncio.create_task(poll(url, token(user), wait=15)) for user in users]
        await asyncio.sleep(2.0)
        started = time.monotonic()
        answer = await user_call(url, token("other"), "GET", "/v1/me/unread-count")
        assert answer.status_code == 200 and time.monotonic() - started < 3
        await wait_delivered(url, (await send(url, users, "to all")).json()["id"])
        pages = await asyncio.wait_for(asyncio.gather(*waits), 20)
        assert all([e["title"] for e in page.json()["items"]] == ["to all"] for page in pages)


async def test_an_erase_during_a_long_poll_is_a_reset(deployment: Deployment) -> None:
    service = Service(deployment)
    with running(service):
        await service.wait_ready_async()
        url, user = service.url, token("ezra")
        with running(Worker(deployment)):
            await wait_delivered(url, (await send(url, ["ezra"], "old")).json()["id"])
        head = (await poll(url, user)).json()["next_cursor"]
        waiting = asyncio.create_task(poll(url, user, after=head, wait=20))
        await asyncio.sleep(1.0)
        assert (await producer_call(url, "DELETE", "/v1/users/ezra")).status_code == 204
        reset = await asyncio.wait_for(waiting, 10)
        assert reset.status_code == 410 and reset.json()["code"] == "cursor_reset"


async def test_the_sdk_long_polls_sync_and_async(deployment: Deployment) -> None:
    from tidings_client import AsyncUserClient, UserClient

    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url, user = service.url, token("sid")
        async with AsyncUserClient(url, user, timeout=2.0) as inbox:  # the wait outlasts the timeout
            head = (await inbox.list_notifications()).next_cursor
            waiting = asyncio.create_task(inbox.list_notifications(after=head, wait=10))
            await asyncio.sleep(2.5)
            notification_id = (await send(url, ["sid"], "async")).json()["id"]
            assert [n.id for n in (await asyncio.wait_for(waiting, 15)).items] == [notification_id]
            with pytest.raises(ValueError):
                await inbox.list_notifications(wait=61)

        def sync_wait() -> list[str]:
            with UserClient(url, user, timeout=2.0) as sync_inbox:
                return [n.title for n in sync_inbox.list_notifications(after=head, wait=3).items]

        assert await asyncio.to_thread(sync_wait) == ["async"]
