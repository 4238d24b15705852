"""The delivery path end to end: real service and worker processes, real Redis, real sockets."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.broker.base import Hint
from service.broker.redis import RedisPublisher
from service.domain.channels import inbox_channel
from service.domain.frames import notification_frame
from service.store.engine import Database
from service.store.repository import NewNotification, Repository
from tests.devices import Device, poll, send, token, wait_delivered
from tests.harness import Deployment, Service, Worker, running

pytestmark = pytest.mark.e2e


def seqs(entries: list[dict[str, object]]) -> list[object]:
    return [entry["seq"] for entry in entries]


async def test_live_delivery_to_two_devices_on_two_services(deployment: Deployment) -> None:
    services = [Service(deployment), Service(deployment)]
    workers = [Worker(deployment), Worker(deployment)]
    with running(*services, *workers):
        await asyncio.gather(*(s.wait_ready_async() for s in services))
        phone = await Device.connect(services[0].ws_url, token("alice"))
        laptop = await Device.connect(services[1].ws_url, token("alice"))
        answer = await send(services[0].url, ["alice"], "Hello", body="first", data={"k": [1, 2]})
        assert answer.status_code == 202, answer.text
        accepted = answer.json()
        assert accepted["status"] == "accepted"
        for device in (phone, laptop):
            (entry,) = await device.wait_notifications(1)
            assert entry["id"] == accepted["id"]
            assert (entry["seq"], entry["title"], entry["body"], entry["data"]) == (1, "Hello", "first", {"k": [1, 2]})
            assert entry["read_at"] is None and entry["cursor"]
        done = await wait_delivered(services[1].url, accepted["id"])
        assert (done["recipients"], done["delivered"]) == (1, 1)
        await asyncio.sleep(0.3)  # nothing more may arrive
        assert len(phone.notifications) == len(laptop.notifications) == 1
        await phone.close()
        await laptop.close()


async def test_reconnect_with_cursor_gets_exactly_what_was_missed(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        device = await Device.connect(service.ws_url, token("carol"))
        first = (await send(service.url, ["carol"], "before")).json()
        (entry,) = await device.wait_notifications(1)
        cursor = entry["cursor"]
        await device.close()

        missed = [(await send(service.url, ["carol"], f"missed {i}")).json()["id"] for i in range(5)]
        for notification_id in missed:
            await wait_delivered(service.url, notification_id)

        # Once through the WebSocket...
        device = await Device.connect(service.ws_url, token("carol"), cursor)
        replayed = device.notifications
        assert [e["id"] for e in replayed] == missed
        assert seqs(replayed) == [2, 3, 4, 5, 6]
        ready = await device.ready()
        assert ready["cursor"] == replayed[-1]["cursor"]
        assert ready["unread"] == 6
        live = (await send(service.url, ["carol"], "live")).json()
        entries = await device.wait_notifications(6)
        assert entries[-1]["id"] == live["id"] and entries[-1]["seq"] == 7
        await device.close()

        # ...and once through polling.
        page = (await poll(service.url, token("carol"), after=cursor)).json()
        assert [e["id"] for e in page["items"]] == [*missed, live["id"]]
        assert page["has_more"] is False and page["truncated"] is False
        assert page["next_cursor"] == page["items"][-1]["cursor"]
        small = (await poll(service.url, token("carol"), after=cursor, limit=2)).json()
        assert [e["id"] for e in small["items"]] == missed[:2] and small["has_more"] is True
        rest = (await poll(service.url, token("carol"), after=small["next_cursor"], limit=500)).json()
        assert [e["id"] for e in rest["items"]] == [*missed[2:], live["id"]]
        empty = (await poll(service.url, token("carol"), after=rest["next_cursor"])).json()
        assert empty["items"] == [] and empty["next_cursor"] == rest["next_cursor"]
        everything = (await poll(service.url, token("carol"))).json()
        assert [e["id"] for e in everything["items"]] == [first["id"], *missed, live["id"]]


async def test_out_of_order_publishes_reach_the_device_in_seq_order(deployment: Deployment) -> None:
    """Worker B publishes seq 6 before worker A publishes seq 5: the device still sees 5, 6."""
    service = Service(deployment)
    database = Database.connect(deployment.database_url)
    repository = Repository(database)
    from redis.asyncio import Redis

    redis = Redis.from_url(deployment.redis_url)
    publisher = RedisPublisher(redis)
    channel = inbox_channel(deployment.prefix, "default", "dave")
    try:
        with running(service):
            await service.wait_ready_async()
            device = await Device.connect(service.ws_url, token("dave"))
            hints = []
            for i in range(6):
                stored, _ = await repository.accept(
                    NewNotification("default", "test", f"n{i + 1}", None, {}, "normal", ["dave"], "p", None, None)
                )
                (delivered,) = await repository.fan_out(stored, ["dave"])
                hints.append(Hint(channel, delivered.epoch, delivered.entry.seq, notification_frame(delivered.entry)))
            await publisher.publish(hints[:4])
            await device.wait_notifications(4)
            await publisher.publish([hints[5]])  # seq 6 first...
            await asyncio.sleep(0.05)
            await publisher.publish([hints[4]])  # ...then seq 5
            entries = await device.wait_notifications(6)
            await asyncio.sleep(0.2)
            assert seqs(device.notifications) == [1, 2, 3, 4, 5, 6]
            assert [e["title"] for e in entries] == [f"n{i}" for i in range(1, 7)]
            await device.close()
    finally:
        await redis.aclose()
        await database.dispose()


async def test_worker_killed_mid_fanout_leaves_one_entry_per_recipient_and_no_gap(deployment: Deployment) -> None:
    users = [f"k{i:04d}" for i in range(1000)]
    env = {"TIDINGS_FANOUT_CHUNK": "25", "TIDINGS_JOB_TIMEOUT_S": "2"}
    service = Service(deployment)
    first = Worker(deployment, **env)
    database = Database.connect(deployment.database_url)
    repository = Repository(database)
    try:
        with running(service, first):
            await service.wait_ready_async()
            warmup = (await send(service.url, users[:100], "warm-up")).json()
            await wait_delivered(service.url, warmup["id"])
            big = (await send(service.url, users, "big")).json()
            deadline = time.monotonic() + 20
            while (count := await repository.delivered_count(big["id"])) == 0:
                assert time.monotonic() < deadline, "fan-out never started"
                await asyncio.sleep(0.005)
            first.kill()
            killed_at = time.monotonic()
            assert count < len(users), "fan-out finished before the kill; the test proves nothing"
            second = Worker(deployment, **env)
            with running(second):
                done = await wait_delivered(service.url, big["id"], timeout=30)
                recovery = time.monotonic() - killed_at
        print(f"\nworker SIGKILL after {count}/{len(users)} entries; delivered {recovery:.1f}s after the kill")
        assert done["delivered"] == len(users)
        assert recovery < 20
        for user in users:
            page = await repository.page_after("default", user, None, 500)
            ids = [entry.id for entry in page.items]
            expected = 2 if user in users[:100] else 1
            assert len(ids) == expected and len(set(ids)) == expected, (user, ids)
            assert [entry.seq for entry in page.items] == list(range(1, expected + 1)), user
    finally:
        await database.dispose()


async def test_a_user_token_never_yields_another_users_entries(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        erin = await Device.connect(service.ws_url, token("erin"))
        frank = await Device.connect(service.ws_url, token("frank"))
        to_erin = [(await send(service.url, ["erin"], f"erin {i}")).json()["id"] for i in range(2)]
        to_frank = (await send(service.url, ["frank"], "frank")).json()["id"]
        await erin.wait_notifications(2)
        await frank.wait_notifications(1)
        await asyncio.sleep(0.3)
        assert [e["id"] for e in erin.notifications] == to_erin
        assert [e["id"] for e in frank.notifications] == [to_frank]
        erin_cursor = erin.notifications[0]["cursor"]
        frank_page = (await poll(service.url, token("frank"))).json()
        assert [e["id"] for e in frank_page["items"]] == [to_frank]
        # Another user's cursor or a user parameter changes nothing: the token decides.
        other = (await poll(service.url, token("frank"), after=erin_cursor, user="erin", user_id="erin")).json()
        assert all(e["id"] not in to_erin for e in other["items"])
        replay = await Device.connect(service.ws_url, token("frank") , erin_cursor)
        await asyncio.sleep(0.2)
        assert all(e["id"] not in to_erin for e in replay.notifications)
        for device in (erin, frank, replay):
            await device.close()
