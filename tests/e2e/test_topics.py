"""Topics: subscriptions managed server-side, resolved to subscribers when delivery starts."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from service.store.engine import Database
from service.store.tables import InboxEntry
from tests.devices import Device, poll, producer_call, send, status, token, wait_delivered
from tests.harness import Deployment, Service, Worker, running

pytestmark = pytest.mark.e2e


async def test_subscriptions_are_managed_and_listed_in_pages(deployment: Deployment) -> None:
    service = Service(deployment)
    with running(service):
        await service.wait_ready_async()
        url = service.url
        for user in ("carol", "alice", "bob"):
            assert (await producer_call(url, "PUT", f"/v1/topics/news/subscribers/{user}")).status_code == 204
        assert (await producer_call(url, "PUT", "/v1/topics/news/subscribers/alice")).status_code == 204  # again
        added = await producer_call(url, "POST", "/v1/topics/news/subscribers", json={"users": ["dave", "alice", "dave"]})
        assert added.status_code == 200 and added.json() == {"added": 1}
        await producer_call(url, "PUT", "/v1/topics/sports/subscribers/alice")

        pages, after = [], None
        while True:
            params = {"limit": 2} | ({"after": after} if after else {})
            page = (await producer_call(url, "GET", "/v1/topics/news/subscribers", params=params)).json()
            pages.append(page["items"])
            after = page["next_after"]
            if not page["has_more"]:
                assert after is None
                break
        assert pages == [["alice", "bob"], ["carol", "dave"]]
        topics = (await producer_call(url, "GET", "/v1/users/alice/topics")).json()
        assert topics == {"items": ["news", "sports"], "has_more": False, "next_after": None}

        assert (await producer_call(url, "DELETE", "/v1/topics/news/subscribers/bob")).status_code == 204
        assert (await producer_call(url, "DELETE", "/v1/topics/news/subscribers/bob")).status_code == 204  # again
        left = (await producer_call(url, "GET", "/v1/topics/news/subscribers")).json()["items"]
        assert left == ["alice", "carol", "dave"]
        assert (await producer_call(url, "GET", "/v1/topics/empty/subscribers")).json()["items"] == []

        for method, path, body in (
            ("PUT", "/v1/topics/bad%20topic/subscribers/alice", None),
            ("PUT", "/v1/topics/news/subscribers/bad%20user", None),
            ("POST", "/v1/topics/news/subscribers", {"users": []}),
            ("POST", "/v1/topics/news/subscribers", {"users": ["x y"]}),
            ("GET", "/v1/topics/news/subscribers?limit=0", None),
        ):
            response = await producer_call(url, method, path, json=body)
            assert response.status_code == 400 and response.json()["code"] == "invalid_request", (path, response.text)
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.put("/v1/topics/news/subscribers/eve")).status_code == 401


async def test_a_topic_resolves_to_its_subscribers_when_delivery_starts(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url = service.url
        await producer_call(url, "POST", "/v1/topics/team/subscribers", json={"users": ["ann", "ben"]})
        now_id = (await send(url, [], "now", recipients={"topic": "team"})).json()["id"]
        assert (await wait_delivered(url, now_id))["recipients"] == 2
        # Scheduled: the subscribers are those of the due time, not of the request.
        later = (await send(url, [], "later", recipients={"topic": "team"}, send_at=_in(2.0))).json()
        assert later["status"] == "scheduled"
        await producer_call(url, "DELETE", "/v1/topics/team/subscribers/ann")
        await producer_call(url, "PUT", "/v1/topics/team/subscribers/cat")
        done = await wait_delivered(url, later["id"], timeout=20)
        assert done["recipients"] == 2 and done["topic"] == "team"
        titles = {user: [e["title"] for e in (await poll(url, token(user))).json()["items"]] for user in ("ann", "ben", "cat")}
        assert titles == {"ann": ["now"], "ben": ["now", "later"], "cat": ["later"]}
        # A topic nobody follows is delivered to no one, at once.
        nobody = (await send(url, [], "void", recipients={"topic": "nobody"})).json()["id"]
        assert (await wait_delivered(url, nobody))["recipients"] == 0


TOPIC_SIZE = 10_000


async def test_ten_thousand_subscribers_get_one_entry_each_and_a_live_device_sees_it(deployment: Deployment) -> None:
    """The 10,000-subscriber fan-out runs in chunks; the timing is printed for the closing note."""
    service, worker = Service(deployment), Worker(deployment, TIDINGS_FANOUT_CHUNK="500")
    users = [f"fan{i:05d}" for i in range(TOPIC_SIZE)]
    with running(service, worker):
        await service.wait_ready_async()
        url = service.url
        for start in range(0, TOPIC_SIZE, 1000):
            response = await producer_call(url, "POST", "/v1/topics/big/subscribers", json={"users": users[start : start + 1000]})
            assert response.json() == {"added": 1000}
        last = users[-1]  # sorted last: its chunk is stored last
        device = await Device.connect(service.ws_url, token(last))
        started = time.monotonic()
        notification_id = (await send(url, [], "to everyone", recipients={"topic": "big"})).json()["id"]
        done = await wait_delivered(url, notification_id, timeout=120)
        elapsed = time.monotonic() - started
        (live,) = await device.wait_notifications(1, timeout=10)
        assert live["id"] == notification_id and live["seq"] == 1
        await device.close()
        assert done["recipients"] == TOPIC_SIZE and done["delivered"] == TOPIC_SIZE
        database = Database.connect(deployment.database_url)
        try:
            async with database.reader.connect() as connection:
                entries = _entries_of(notification_id)
                total, distinct = (await connection.execute(entries)).one()
        finally:
            await database.dispose()
        assert total == distinct == TOPIC_SIZE
        print(f"\ntopic of {TOPIC_SIZE} subscribers on {deployment.database_url.split(':')[0]}: delivered in {elapsed:.2f}s")
        assert (await status(url, notification_id))["status"] == "delivered"


def _entries_of(notification_id: str) -> object:
    entries = InboxEntry.__table__
    return select(func.count(), func.count(func.distinct(entries.c.user_id))).where(
        entries.c.notification_id == notification_id
    )


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()
