"""Scheduling: ``send_at`` stores a notification as ``scheduled``; it is fanned out when due, from
the store's truth (a lost Redis job changes nothing), and can be cancelled until delivery starts."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from redis.asyncio import Redis

from tests.devices import poll, producer_call, send, status, token, wait_delivered
from tests.harness import API_KEY, Deployment, Service, Worker, running

pytestmark = pytest.mark.e2e


def _in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def test_a_scheduled_notification_waits_for_its_time(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url = service.url
        sent_at = time.monotonic()
        answer = await send(url, ["sam"], "reminder", send_at=_in(2.0))
        assert answer.status_code == 202 and answer.json()["status"] == "scheduled"
        notification_id = answer.json()["id"]
        current = await status(url, notification_id)
        assert current["status"] == "scheduled" and current["send_at"] is not None and current["delivered"] == 0
        assert (await poll(url, token("sam"))).json()["items"] == []
        await wait_delivered(url, notification_id, timeout=20)
        assert time.monotonic() - sent_at >= 1.8
        assert [e["title"] for e in (await poll(url, token("sam"))).json()["items"]] == ["reminder"]

        past = await send(url, ["sam"], "overdue", send_at=_in(-3600))
        assert past.json()["status"] == "accepted"
        await wait_delivered(url, past.json()["id"])
        # A replay of a scheduled request answers as the first time did.
        key = {"Idempotency-Key": "sched-1"}
        body = {"recipients": {"users": ["sam"]}, "type": "t", "title": "x", "send_at": _in(60)}
        first = await producer_call(url, "POST", "/v1/notifications", headers=key, json=body)
        again = await producer_call(url, "POST", "/v1/notifications", headers=key, json=body)
        assert first.json()["status"] == again.json()["status"] == "scheduled"
        assert again.headers["Idempotent-Replayed"] == "true"


async def test_cancel_before_due_and_after_delivery(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url = service.url
        scheduled = (await send(url, ["cid"], "never", send_at=_in(1.5))).json()["id"]
        cancelled = await producer_call(url, "DELETE", f"/v1/notifications/{scheduled}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert (await producer_call(url, "DELETE", f"/v1/notifications/{scheduled}")).json()["status"] == "cancelled"
        delivered = (await send(url, ["cid"], "sent")).json()["id"]
        await wait_delivered(url, delivered)
        refused = await producer_call(url, "DELETE", f"/v1/notifications/{delivered}")
        assert refused.status_code == 409 and refused.json()["code"] == "not_cancellable"
        for missing in ("0" * 32, "nope"):
            gone = await producer_call(url, "DELETE", f"/v1/notifications/{missing}")
            assert gone.status_code == 404 and gone.json()["code"] == "not_found"
        await asyncio.sleep(2.5)  # past the cancelled one's due time, and a sweep
        assert (await status(url, scheduled))["status"] == "cancelled"
        assert [e["title"] for e in (await poll(url, token("cid"))).json()["items"]] == ["sent"]


RACES = 40


async def test_cancel_racing_the_due_time_is_one_or_the_other(deployment: Deployment) -> None:
    """Cancels land around the due time: each notification ends cancelled with no entry, or
    delivered with every entry, never both."""
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url = service.url
        due = datetime.now(UTC) + timedelta(seconds=6)
        items = [
            {"recipients": {"users": ["r1", "r2", "r3"]}, "type": "race", "title": f"race {i}", "send_at": due.isoformat()}
            for i in range(RACES)
        ]
        results = (await producer_call(url, "POST", "/v1/notifications/batch", json={"notifications": items})).json()
        ids = [result["id"] for result in results["results"]]
        assert (due - datetime.now(UTC)).total_seconds() > 1.0, "the batch took too long to set up the race"
        await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds() - 1.0))

        async def cancel(client: httpx.AsyncClient, index: int, notification_id: str) -> int:
            await asyncio.sleep(index * 0.05)  # from 1 s before the due time to 1 s after
            return (await client.delete(f"/v1/notifications/{notification_id}")).status_code

        async with httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            codes = await asyncio.gather(*(cancel(client, i, nid) for i, nid in enumerate(ids)))
        assert set(codes) == {200, 409}, codes  # both sides of the race were exercised
        deadline = time.monotonic() + 30
        outcomes: dict[str, dict[str, object]] = {}
        while len(outcomes) < RACES:
            for notification_id in ids:
                current = await status(url, notification_id)
                if current["status"] in ("cancelled", "delivered"):
                    outcomes[notification_id] = current
            assert time.monotonic() < deadline, "not every notification settled"
            await asyncio.sleep(0.2)
        for code, notification_id in zip(codes, ids, strict=True):
            current = outcomes[notification_id]
            if code == 200:
                assert current["status"] == "cancelled" and current["delivered"] == 0, current
            else:
                assert current["status"] == "delivered" and current["delivered"] == 3, current
        inbox = {e["id"] for e in (await poll(url, token("r1"), limit=100)).json()["items"]}
        assert inbox == {nid for code, nid in zip(codes, ids, strict=True) if code == 409}
        print(f"\ncancel race: {codes.count(200)} cancelled, {codes.count(409)} delivered")


async def test_a_scheduled_notification_survives_the_loss_of_its_queued_job(deployment: Deployment) -> None:
    """Redis loses the deferred job (as on a restart without persistence): the sweeper, reading
    the store, still delivers it when due."""
    service = Service(deployment)
    with running(service):
        await service.wait_ready_async()
        url = service.url
        notification_id = (await send(url, ["lou"], "kept", send_at=_in(1.0))).json()["id"]
        redis = Redis.from_url(deployment.redis_url)
        try:
            assert await redis.zcard(deployment.queue_name) == 1
            await redis.delete(deployment.queue_name)
            async for key in redis.scan_iter(match=f"arq:job:{deployment.prefix}:*"):
                await redis.delete(key)
        finally:
            await redis.aclose()
        with running(Worker(deployment)):
            await wait_delivered(url, notification_id, timeout=30)
        assert [e["title"] for e in (await poll(url, token("lou"))).json()["items"]] == ["kept"]


async def test_send_at_with_any_offset_means_the_same_moment(deployment: Deployment) -> None:
    """SQLite stores no offset: a time given as +05:00 or -03:00 must still be due at that moment."""
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url = service.url
        for hours in (5, -3):
            zone = timezone(timedelta(hours=hours))
            due = (datetime.now(UTC) + timedelta(seconds=1.5)).astimezone(zone)
            answer = (await send(url, ["olga"], f"at {hours:+d}", send_at=due.isoformat(), ttl_seconds=3600)).json()
            assert answer["status"] == "scheduled"
            current = await status(url, answer["id"])
            assert datetime.fromisoformat(current["send_at"].replace("Z", "+00:00")) == due.replace(microsecond=due.microsecond // 1000 * 1000)
            await wait_delivered(url, answer["id"], timeout=15)
            assert datetime.now(UTC) >= due
        entries = (await poll(url, token("olga"))).json()["items"]
        for entry in entries:  # an hour after the due moment, whatever offset it was given in
            created = datetime.fromisoformat(entry["created_at"].replace("Z", "+00:00"))
            expires = datetime.fromisoformat(entry["expires_at"].replace("Z", "+00:00"))
            assert timedelta(minutes=59) < expires - created < timedelta(minutes=61), entry
