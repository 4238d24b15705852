"""Expiry (``ttl_seconds``) hides entries on every path; retention deletes old ones and says so."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.domain.cursor import Cursor
from tests.devices import Device, poll, producer_call, send, token, user_call, wait_delivered
from tests.harness import Deployment, Service, Worker, running
from tests.seed import age_entries, tombstone, tombstones

pytestmark = pytest.mark.e2e


async def test_an_expired_entry_is_hidden_everywhere_and_is_not_a_truncation(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url, user = service.url, token("tess")
        short = (await send(url, ["tess"], "flash sale", ttl_seconds=1)).json()["id"]
        await wait_delivered(url, short)
        kept = (await send(url, ["tess"], "invoice")).json()["id"]
        await wait_delivered(url, kept)
        fresh = (await poll(url, user)).json()["items"]
        assert [e["title"] for e in fresh] == ["flash sale", "invoice"] and fresh[0]["expires_at"] is not None
        head = (await poll(url, user)).json()["next_cursor"]
        # The count comes with the head it was counted to, so polling from there adds only newer ones.
        assert (await user_call(url, user, "GET", "/v1/me/unread-count")).json() == {"unread": 2, "cursor": head}

        await asyncio.sleep(max(0.0, _seconds_until(fresh[0]["expires_at"])) + 0.2)
        start = Cursor(1, 0).encode()
        page = (await poll(url, user, after=start)).json()
        assert [e["id"] for e in page["items"]] == [kept] and page["truncated"] is False
        assert [e["id"] for e in (await poll(url, user, before=head)).json()["items"]] == [kept]
        assert (await poll(url, user, after=fresh[0]["cursor"])).json()["truncated"] is False
        assert (await user_call(url, user, "GET", "/v1/me/unread-count")).json() == {"unread": 1, "cursor": head}
        device = await Device.connect(service.ws_url, user, start)
        ready = await device.ready()
        assert [e["id"] for e in device.notifications] == [kept]
        assert ready["truncated"] is False and ready["unread"] == 1
        await device.close()
        # Read state leaves a hidden entry alone, by id and by cursor.
        hidden = await user_call(url, user, "POST", "/v1/me/notifications/read", json={"ids": [short]})
        assert hidden.json()["updated"] == 0
        marked = await user_call(url, user, "POST", "/v1/me/notifications/read", json={"up_to": head})
        assert marked.json()["updated"] == 1 and marked.json()["unread"] == 0


async def test_an_entry_stored_after_it_expired_is_not_pushed_live(deployment: Deployment) -> None:
    """The worker was down past the ttl: the entry is stored (and counted delivered) but hidden,
    so a live device never sees it, and what comes next arrives as usual."""
    service = Service(deployment)
    with running(service):
        await service.wait_ready_async()
        url, user = service.url, token("yuri")
        device = await Device.connect(service.ws_url, user)
        stale = (await send(url, ["yuri"], "too late", ttl_seconds=1)).json()["id"]
        await asyncio.sleep(1.5)
        with running(Worker(deployment)):
            await wait_delivered(url, stale)
            fresh = (await send(url, ["yuri"], "on time")).json()["id"]
            (entry,) = await device.wait_notifications(1)
            assert entry["id"] == fresh and entry["seq"] == 2
            await asyncio.sleep(0.3)
            assert [e["id"] for e in device.notifications] == [fresh]
        await device.close()


def _seconds_until(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() - time.time()


async def test_retention_removes_old_entries_and_an_older_cursor_is_truncated(deployment: Deployment) -> None:
    service = Service(deployment)
    url, user = service.url, token("ivy")
    with running(service):
        await service.wait_ready_async()
        with running(Worker(deployment)):
            ids = []
            for title in ("old 1", "old 2", "new 3"):
                ids.append((await send(url, ["ivy"], title)).json()["id"])
                await wait_delivered(url, ids[-1])
        page = (await poll(url, user)).json()
        cursors = [e["cursor"] for e in page["items"]]
        await tombstone(deployment.database_url, ids[2], "someone-erased")  # of a delivered notification
        assert sorted(await age_entries(deployment.database_url, "ivy", 2, days=40)) == sorted(ids[:2])

        with running(Worker(deployment, TIDINGS_RETENTION_DAYS="30")):  # retention runs at start-up
            deadline = time.monotonic() + 30
            while len((await poll(url, user)).json()["items"]) > 1:
                assert time.monotonic() < deadline, "retention did not run"
                await asyncio.sleep(0.2)
            deadline = time.monotonic() + 10
            while await tombstones(deployment.database_url):
                assert time.monotonic() < deadline, "the tombstone of a delivered notification was kept"
                await asyncio.sleep(0.2)
            # The same pass then removes the purged notifications' rows: gone from the producer's view.
            deadline = time.monotonic() + 10
            while (await producer_call(url, "GET", f"/v1/notifications/{ids[0]}")).status_code != 404:
                assert time.monotonic() < deadline, "the purged notification's row was kept"
                await asyncio.sleep(0.2)

        from_start = (await poll(url, user, after=Cursor(1, 0).encode())).json()
        assert from_start["truncated"] is True and [e["title"] for e in from_start["items"]] == ["new 3"]
        assert (await poll(url, user, after=cursors[0])).json()["truncated"] is True
        assert (await poll(url, user, after=cursors[1])).json()["truncated"] is False
        device = await Device.connect(service.ws_url, user, cursors[0])
        ready = await device.ready()
        assert ready["truncated"] is True and [e["title"] for e in device.notifications] == ["new 3"]
        await device.close()
        newer = await Device.connect(service.ws_url, user, cursors[1])
        assert (await newer.ready())["truncated"] is False
        await newer.close()
        assert (await producer_call(url, "GET", f"/v1/notifications/{ids[2]}")).json()["status"] == "delivered"
