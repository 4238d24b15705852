"""The delivery contract under stress: idempotent enqueue, paced replay, lost publishes, epochs and
truncation, and a status that agrees with the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool
from tidings_client import Backoff, Subscriber

from service.domain.cursor import Cursor
from service.queue import enqueue_delivery
from service.store.engine import Database
from service.store.repository import NewNotification, Repository
from service.store.retention import RetentionStore
from tests.devices import Device, poll, send, status, token, wait_delivered
from tests.harness import API_KEY, Deployment, Service, Worker, running
from tests.seed import age_entries, bulk_inbox, corrupt_notification, unpublished_entry

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {API_KEY}"}
BODY = {"recipients": {"users": ["olga"]}, "type": "test", "title": "once"}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def test_idempotency_key_makes_retries_safe(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            # Ten copies in flight at once: one notification.
            answers = await asyncio.gather(
                *(client.post("/v1/notifications", json=BODY, headers={**AUTH, "Idempotency-Key": "k-1"}) for _ in range(10))
            )
            assert {a.status_code for a in answers} == {202}
            assert len({a.json()["id"] for a in answers}) == 1
            assert {a.json()["status"] for a in answers} == {"accepted"}
            first_id = answers[0].json()["id"]
            await wait_delivered(service.url, first_id)
            replay = await client.post("/v1/notifications", json=BODY, headers={**AUTH, "Idempotency-Key": "k-1"})
            assert replay.status_code == 202 and replay.json() == {"id": first_id, "status": "accepted"}
            assert replay.headers["idempotent-replayed"] == "true"
            conflict = await client.post(
                "/v1/notifications", json={**BODY, "title": "other"}, headers={**AUTH, "Idempotency-Key": "k-1"}
            )
            assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_conflict"

        # A producer that gives up waiting (client-side timeout) and retries: one notification.
        retry_body = {**BODY, "title": "retried"}
        async with httpx.AsyncClient(base_url=service.url, timeout=httpx.Timeout(0.0005)) as impatient:
            with contextlib.suppress(httpx.TimeoutException):
                await impatient.post("/v1/notifications", json=retry_body, headers={**AUTH, "Idempotency-Key": "k-2"})
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            again = await client.post("/v1/notifications", json=retry_body, headers={**AUTH, "Idempotency-Key": "k-2"})
        assert again.status_code == 202
        await wait_delivered(service.url, again.json()["id"])
        await asyncio.sleep(0.5)
        titles = [e["title"] for e in (await poll(service.url, token("olga"))).json()["items"]]
        assert titles == ["once", "retried"]

        # Remembered for 24 hours: an older key names a new notification.
        database = Database.connect(deployment.database_url)
        try:
            from sqlalchemy import update

            from service.store.tables import Notification

            async with database.writer.begin() as connection:
                await connection.execute(
                    update(Notification.__table__)
                    .where(Notification.__table__.c.id == first_id)
                    .values(created_at=datetime.now(UTC) - timedelta(hours=25))
                )
        finally:
            await database.dispose()
        async with httpx.AsyncClient(base_url=service.url, timeout=10) as client:
            later = await client.post("/v1/notifications", json=BODY, headers={**AUTH, "Idempotency-Key": "k-1"})
        assert later.status_code == 202, service.output()[-2500:]
        assert later.json()["id"] != first_id
        assert "idempotent-replayed" not in later.headers


async def test_a_device_20000_entries_behind_replays_in_order_with_bounded_memory(deployment: Deployment) -> None:
    backlog = 20_000
    await bulk_inbox(deployment.database_url, "pia", backlog, {"pad": "p" * 2000})
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        before = rss_kib(service.pid)
        peak = before
        device = await Device.connect(service.ws_url, token("pia"), Cursor(1, 0).encode(), wait_ready=False)
        live_ids: list[str] = []

        async def producer() -> None:
            for i in range(20):
                live_ids.append((await send(service.url, ["pia"], f"live {i}")).json()["id"])
                await asyncio.sleep(0.05)

        sending = asyncio.create_task(producer())
        deadline = time.monotonic() + 120
        while len(device.notifications) < backlog + 20:
            assert time.monotonic() < deadline, f"only {len(device.notifications)} arrived"
            peak = max(peak, rss_kib(service.pid))
            await asyncio.sleep(0.05)
        await sending
        await device.ready()
        await device.close()
    growth_mib = (peak - before) / 1024
    print(f"\nreplay of {backlog} entries (~2 KB each): service RSS {before / 1024:.0f} MiB -> peak "
          f"{peak / 1024:.0f} MiB (growth {growth_mib:.1f} MiB)")
    entries = device.notifications
    assert [e["seq"] for e in entries] == list(range(1, backlog + 21))
    assert [e["id"] for e in entries[backlog:]] == live_ids
    # The backlog alone is ~40 MiB of JSON; a replay that loaded it at once would exceed this.
    assert growth_mib < 25


async def test_a_lost_publish_is_delivered_by_gap_fill_or_positioning(deployment: Deployment) -> None:
    # Positioning every 0.5 s for one service; a second one that positions only every 120 s,
    # so on it only the gap fill can deliver the lost entry.
    quick = Service(deployment, TIDINGS_POSITIONING_INTERVAL_S="0.5")
    slow = Service(deployment, TIDINGS_POSITIONING_INTERVAL_S="120")
    worker = Worker(deployment)
    with running(quick, slow, worker):
        await asyncio.gather(quick.wait_ready_async(), slow.wait_ready_async())
        gap_device = await Device.connect(slow.ws_url, token("quinn"))
        lost = await unpublished_entry(deployment.database_url, "quinn", "lost")
        await asyncio.sleep(0.3)
        assert gap_device.notifications == []
        later = (await send(slow.url, ["quinn"], "later")).json()
        entries = await gap_device.wait_notifications(2, timeout=5)
        assert [e["id"] for e in entries] == [lost.entry.id, later["id"]]

        idle_device = await Device.connect(quick.ws_url, token("rosa"))
        started = time.monotonic()
        lost = await unpublished_entry(deployment.database_url, "rosa", "lost, nothing after")
        (entry,) = await idle_device.wait_notifications(1, timeout=5)
        delay = time.monotonic() - started
        print(f"\nlost publish with no later entry: delivered by positioning after {delay * 1000:.0f} ms "
              "(interval 500 ms)")
        assert entry["id"] == lost.entry.id
        assert delay < 2.0
        for device in (gap_device, idle_device):
            await device.close()


async def test_an_erased_inbox_resets_cursors_everywhere(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    reset_calls: list[float] = []
    with running(service, worker):
        await service.wait_ready_async()
        old = [(await send(service.url, ["sam"], f"old {i}")).json()["id"] for i in range(3)]
        for notification_id in old:
            await wait_delivered(service.url, notification_id)
        old_cursor = (await poll(service.url, token("sam"))).json()["items"][0]["cursor"]
        live = await Device.connect(service.ws_url, token("sam"))
        subscriber = Subscriber(service.url, token=lambda: token("sam"), cursor=old_cursor,
                                on_reset=lambda: reset_calls.append(time.monotonic()), backoff=Backoff(0.05, 0.5))
        seen: list[tuple[int, str]] = []

        async def consume() -> None:
            async for n in subscriber:
                seen.append((n.seq, n.title))

        consumer = asyncio.create_task(consume())
        try:
            await wait_for(lambda: len(seen) == 2, 10)  # replayed seq 2 and 3 after the cursor of seq 1
            async with httpx.AsyncClient(base_url=service.url) as client:
                assert (await client.delete("/v1/users/sam", headers=AUTH)).status_code == 204
                assert (await client.delete("/v1/users/bad%20id", headers=AUTH)).status_code == 400
                assert (await client.delete("/v1/users/sam")).status_code == 401
            assert await live.wait_closed() == 4009
            assert live.frames[-1]["type"] == "error" and live.frames[-1]["code"] == "cursor_reset"
            gone = await poll(service.url, token("sam"), after=old_cursor)
            assert gone.status_code == 410 and gone.json()["code"] == "cursor_reset"
            refused = await Device.connect(service.ws_url, token("sam"), old_cursor, wait_ready=False)
            assert await refused.wait_closed() == 4009
            fresh = (await send(service.url, ["sam"], "new epoch")).json()["id"]
            await wait_for(lambda: (1, "new epoch") in seen, 10)
        finally:
            await subscriber.close()
            consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
        assert reset_calls, "the SDK did not tell the application about the reset"
        assert seen == [(2, "old 1"), (3, "old 2"), (1, "new epoch")]
        page = (await poll(service.url, token("sam"))).json()
        assert [(e["seq"], e["id"]) for e in page["items"]] == [(1, fresh)]
        assert Cursor.decode(page["next_cursor"]).epoch == Cursor.decode(old_cursor).epoch + 1


async def test_a_cursor_older_than_what_is_stored_says_truncated(deployment: Deployment) -> None:
    await bulk_inbox(deployment.database_url, "tara", 6, {})
    await age_entries(deployment.database_url, "tara", 3, days=400)
    database = Database.connect(deployment.database_url)
    try:  # what the retention job does to entries past the horizon
        purged = await RetentionStore(database).purge_batch(datetime.now(UTC) - timedelta(days=30), 1000)
        assert purged.entries == 3
    finally:
        await database.dispose()
    service = Service(deployment)
    with running(service):
        await service.wait_ready_async()
        page = (await poll(service.url, token("tara"), after=Cursor(1, 1).encode())).json()
        assert [e["seq"] for e in page["items"]] == [4, 5, 6] and page["truncated"] is True
        whole = (await poll(service.url, token("tara"), after=Cursor(1, 3).encode())).json()
        assert [e["seq"] for e in whole["items"]] == [4, 5, 6] and whole["truncated"] is False
        device = await Device.connect(service.ws_url, token("tara"), Cursor(1, 1).encode())
        assert [e["seq"] for e in device.notifications] == [4, 5, 6]
        assert (await device.ready())["truncated"] is True
        await device.close()


async def test_status_agrees_with_the_store_throughout_a_fan_out(deployment: Deployment) -> None:
    users = [f"s{i:04d}" for i in range(1000)]
    service, worker = Service(deployment), Worker(deployment, TIDINGS_FANOUT_CHUNK="25")
    database = Database.connect(deployment.database_url)
    repository = Repository(database)
    arq = ArqRedis(connection_pool=ConnectionPool.from_url(deployment.redis_url))
    try:
        with running(service, worker):
            await service.wait_ready_async()
            big = (await send(service.url, users, "big")).json()["id"]
            seen = []
            while True:
                current = await status(service.url, big)
                stored = await repository.delivered_count(big)
                seen.append((current["status"], current["delivered"]))
                assert current["delivered"] <= stored  # the store moved on, never back
                if current["status"] == "delivered":
                    assert current["delivered"] == current["recipients"] == 1000
                    break
                assert current["status"] == "accepted" and current["delivered"] < 1000
                await asyncio.sleep(0.01)
            counts = [count for _, count in seen]
            assert counts == sorted(counts) and len(set(counts)) > 2, counts[:20]

            broken, _ = await repository.accept(
                NewNotification("default", "test", "broken", None, {}, "normal", ["ursula"], "p", None, None)
            )
            await corrupt_notification(deployment.database_url, broken.id)
            await enqueue_delivery(arq, deployment.queue_name, deployment.prefix, broken.id)
            deadline = time.monotonic() + 15
            while (failed := await status(service.url, broken.id))["status"] != "failed":
                assert time.monotonic() < deadline, failed
                await asyncio.sleep(0.05)
            assert failed["reason"] and failed["delivered"] == 0
    finally:
        await arq.aclose(close_connection_pool=True)
        await database.dispose()


async def wait_for(predicate: object, timeout: float) -> None:
    async def loop() -> None:
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)

    await asyncio.wait_for(loop(), timeout)


async def test_a_worker_killed_during_a_5000_recipient_fan_out_burns_no_seq(deployment: Deployment) -> None:
    # 5,000 recipients in all: five notifications of 1,000 (the per-notification limit), in flight together.
    groups = [[f"f{g}-{i:04d}" for i in range(1000)] for g in range(5)]
    env = {"TIDINGS_FANOUT_CHUNK": "100", "TIDINGS_JOB_TIMEOUT_S": "2"}
    service, first = Service(deployment), Worker(deployment, **env)
    database = Database.connect(deployment.database_url)
    repository = Repository(database)
    try:
        with running(service, first):
            await service.wait_ready_async()
            ids = [(await send(service.url, users, f"group {g}")).json()["id"] for g, users in enumerate(groups)]
            deadline = time.monotonic() + 30
            while sum([await repository.delivered_count(i) for i in ids]) < 300:
                assert time.monotonic() < deadline, "fan-out never got going"
                await asyncio.sleep(0.01)
            first.kill()
            killed_at = time.monotonic()
            stored_at_kill = sum([await repository.delivered_count(i) for i in ids])
            assert stored_at_kill < 5000, "everything was stored before the kill; the test proves nothing"
            with running(Worker(deployment, **env), Worker(deployment, **env)):
                for notification_id in ids:
                    await wait_delivered(service.url, notification_id, timeout=60)
                recovery = time.monotonic() - killed_at
        print(f"\nworker SIGKILL at {stored_at_kill}/5000 entries; all 5000 stored {recovery:.1f}s after the kill")
        assert recovery < 30
        heads = {}
        for users in groups:
            heads.update(await repository.heads("default", users))
        assert len(heads) == 5000 and {head.seq for head in heads.values()} == {1}, "a seq was burnt"
        for g, users in enumerate(groups):
            for user in users[::50]:
                page = await repository.page_after("default", user, None, 10)
                assert [(e.seq, e.id) for e in page.items] == [(1, ids[g])]
        assert sum([await repository.delivered_count(i) for i in ids]) == 5000
    finally:
        await database.dispose()
