"""``GET /v1/events``: entries as Server-Sent Events, resumed through ``Last-Event-ID``."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.devices import poll, producer_call, send, token, user_call, wait_delivered
from tests.harness import Deployment, Service, Worker, running

pytestmark = pytest.mark.e2e


class EventReader:
    """Reads one SSE response into a list of events (dicts of field -> value)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.events: list[dict[str, str]] = []
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        event: dict[str, str] = {}
        with contextlib.suppress(httpx.HTTPError):
            async for line in self.response.aiter_lines():
                if not line:
                    if event:
                        self.events.append(event)
                        self._changed.set()
                    event = {}
                    continue
                field, _, value = line.partition(":")
                event[field or "comment"] = value.removeprefix(" ")
        self._changed.set()

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(e["data"]) | {"_id": e.get("id")} for e in self.events if "id" in e and "event" not in e]

    async def until(self, predicate: Any, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                if predicate():
                    return
                await self._changed.wait()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def sse(url: str, **kwargs: Any) -> AsyncIterator[EventReader]:
    async with httpx.AsyncClient(timeout=httpx.Timeout(10, read=30)) as client:
        async with client.stream("GET", f"{url}/v1/events", **kwargs) as response:
            assert response.status_code == 200, await response.aread()
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = EventReader(response)
            try:
                yield reader
            finally:
                await reader.close()


async def test_entries_arrive_as_events_and_resume_from_last_event_id(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url, jwt = service.url, token("sara")
        async with sse(url, params={"token": jwt}) as reader:
            await reader.until(lambda: any(e.get("event") == "ready" for e in reader.events))
            first = (await send(url, ["sara"], "one")).json()["id"]
            await reader.until(lambda: len(reader.entries()) == 1)
            (entry,) = reader.entries()
            assert entry["id"] == first and entry["_id"] == entry["cursor"] and entry["seq"] == 1
        last_seen = entry["cursor"]
        missed = []
        for title in ("two", "three"):
            missed.append((await send(url, ["sara"], title)).json()["id"])
            await wait_delivered(url, missed[-1])
        # What a browser does on its own after a drop: the same URL, plus Last-Event-ID.
        async with sse(url, headers={"Authorization": f"Bearer {jwt}", "Last-Event-ID": last_seen}) as reader:
            await reader.until(lambda: any(e.get("event") == "ready" for e in reader.events))
            assert [e["id"] for e in reader.entries()] == missed
            ready = json.loads(next(e["data"] for e in reader.events if e.get("event") == "ready"))
            assert ready["unread"] == 3
            await user_call(url, jwt, "POST", "/v1/me/notifications/read", json={"ids": [first]})
            await reader.until(lambda: any(e.get("event") == "state" for e in reader.events))
            # An erase ends the stream with a closing event (the browser's retry then gets 410).
            await producer_call(url, "DELETE", "/v1/users/sara")
            await reader.until(lambda: any(e.get("event") == "closing" for e in reader.events))
            closing = json.loads(next(e["data"] for e in reader.events if e.get("event") == "closing"))
            assert closing["code"] == "cursor_reset"
        assert jwt not in service.output(), "the token leaked into a log line"


async def test_bad_tokens_and_stale_cursors_are_refused_before_any_event(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url, jwt = service.url, token("rex")
        await wait_delivered(url, (await send(url, ["rex"], "old")).json()["id"])
        old = (await poll(url, jwt)).json()["next_cursor"]
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            assert (await client.get("/v1/events")).status_code == 401
            assert (await client.get("/v1/events", params={"token": "nope"})).status_code == 401
            bad = await client.get("/v1/events", params={"token": jwt, "cursor": "garbage"})
            assert bad.status_code == 400 and bad.json()["field"] == "cursor"
            await producer_call(url, "DELETE", "/v1/users/rex")
            gone = await client.get("/v1/events", headers={"Authorization": f"Bearer {jwt}", "Last-Event-ID": old})
            assert gone.status_code == 410 and gone.json()["code"] == "cursor_reset"
