"""POST /v1/notifications/batch: one result per item; a bad item does not sink the others."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from tidings_client import AsyncTidingsClient, BatchResult, TidingsClient

from tests.devices import Device, poll, token, wait_delivered
from tests.harness import API_KEY, Deployment, Service, Worker, running

pytestmark = pytest.mark.e2e
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def nested(depth: int) -> dict[str, Any]:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return {"x": value}


def item(title: str, users: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"recipients": {"users": users or ["vera"]}, "type": "batch", "title": title, **extra}


async def test_a_batch_answers_per_item_and_stores_only_the_valid_ones(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        device = await Device.connect(service.ws_url, token("vera"))
        batch = [
            item("one", idempotency_key="b-1"),
            {"recipients": {"users": ["vera"]}, "type": "batch"},  # no title
            item("two", ["vera", "walt"]),
            "not an object",
            item("one", idempotency_key="b-1"),  # the same key and body again: a replay
            item("other", idempotency_key="b-1"),  # the same key, another body
            item("deep", data=nested(40)),
            item("three", priority="high"),
        ]
        async with httpx.AsyncClient(base_url=service.url, timeout=30) as client:
            answer = await client.post("/v1/notifications/batch", json={"notifications": batch}, headers=AUTH)
            assert answer.status_code == 202, answer.text
            results = answer.json()["results"]
            assert [r["index"] for r in results] == list(range(len(batch)))
            ok = [r for r in results if "id" in r]
            assert [r["index"] for r in ok] == [0, 2, 4, 7]
            assert results[4]["id"] == results[0]["id"] and results[4]["replayed"] is True
            assert results[1]["error"] == {"code": "invalid_request", "detail": results[1]["error"]["detail"],
                                           "field": "notifications[1].title"}
            assert results[3]["error"]["field"] == "notifications[3]"
            assert results[5]["error"]["code"] == "idempotency_conflict"
            assert results[5]["error"]["field"] == "notifications[5].idempotency_key"
            assert results[6]["error"]["field"] == "notifications[6].data"
            for result in ok:
                await wait_delivered(service.url, result["id"])
            entries = await device.wait_notifications(3)
            assert sorted(e["title"] for e in entries) == ["one", "three", "two"]
            page = (await poll(service.url, token("walt"))).json()
            assert [e["title"] for e in page["items"]] == ["two"]

            # The envelope itself: 400, nothing stored.
            for body, field in (({}, "notifications"), ({"notifications": []}, "notifications"),
                                ({"notifications": [item(str(i)) for i in range(1001)]}, "notifications"),
                                ({"notifications": {"a": 1}}, "notifications")):
                response = await client.post("/v1/notifications/batch", json=body, headers=AUTH)
                assert response.status_code == 400 and response.json()["field"] == field, response.text
            assert (await client.post("/v1/notifications/batch", json={"notifications": [item("x")]})).status_code == 401
        # The same through the SDK, async and sync.
        async with AsyncTidingsClient(service.url, API_KEY) as producer:
            results = await producer.send_batch([item("sdk async"), {"recipients": {"users": []}, "type": "t", "title": "x"}])
        assert results[0].ok and results[0].id and results[0].status == "accepted"
        assert not results[1].ok and results[1].error_field == "notifications[1].recipients.users"

        def sync_batch() -> list[BatchResult]:
            with TidingsClient(service.url, API_KEY) as producer:
                return producer.send_batch([item("sdk sync")])

        (synced,) = await asyncio.to_thread(sync_batch)
        assert synced.ok
        titles = [e["title"] for e in await device.wait_notifications(5)]
        assert {"sdk async", "sdk sync"} <= set(titles)
        await device.close()
        assert "Traceback" not in service.output()
