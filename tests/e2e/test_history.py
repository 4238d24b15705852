"""GET /v1/me/notifications?before=CURSOR: history, newest first, paged by cursor."""

from __future__ import annotations

import pytest
from tidings_client import AsyncUserClient

from service.domain.cursor import Cursor
from tests.devices import poll, send, token, wait_delivered
from tests.harness import Deployment, Service, Worker, running

pytestmark = pytest.mark.e2e


async def test_history_pages_newest_first_down_to_the_first_entry(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        for i in range(5):
            await wait_delivered(service.url, (await send(service.url, ["xena"], f"n{i + 1}")).json()["id"])
        user = token("xena")
        head = (await poll(service.url, user)).json()["next_cursor"]  # the head: after the newest entry
        pages, cursor = [], head
        while True:
            page = (await poll(service.url, user, before=cursor, limit=2)).json()
            pages.append([e["seq"] for e in page["items"]])
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        assert pages == [[5, 4], [3, 2], [1]]
        assert (await poll(service.url, user, before=cursor)).json()["items"] == []
        middle = (await poll(service.url, user, before=Cursor(1, 3).encode())).json()
        assert [e["title"] for e in middle["items"]] == ["n3", "n2", "n1"]

        async with AsyncUserClient(service.url, user) as sdk:
            newest = await sdk.list_notifications(before=head, limit=3)
        assert [n.seq for n in newest.items] == [5, 4, 3] and newest.has_more

        both = await poll(service.url, user, before=head, after=head)
        assert both.status_code == 400 and both.json()["field"] == "before"
        bad = await poll(service.url, user, before="nope")
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_cursor" and bad.json()["field"] == "before"
        for stale in (Cursor(9, 1).encode(), Cursor(1, 99).encode()):
            assert (await poll(service.url, user, before=stale)).status_code == 410
