"""Read state: read / unread / archived per entry, synced to every device, badges that never drift."""

from __future__ import annotations

import json

import pytest

from tests.devices import Device, poll, send, token, user_call, wait_delivered
from tests.harness import Deployment, Service, Worker, running

pytestmark = pytest.mark.e2e


async def _deliver(url: str, user: str, titles: list[str]) -> list[str]:
    ids = []
    for title in titles:
        notification_id = (await send(url, [user], title)).json()["id"]
        await wait_delivered(url, notification_id)
        ids.append(notification_id)
    return ids


def _states(device: Device) -> list[dict[str, object]]:
    return [frame for frame in device.frames if frame["type"] == "state"]


async def test_a_change_on_one_device_reaches_the_other_live(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url, user = service.url, token("rita")
        phone = await Device.connect(service.ws_url, user)
        laptop = await Device.connect(service.ws_url, user)
        ids = await _deliver(url, "rita", ["a", "b", "c"])
        await phone.wait_notifications(3)
        await laptop.wait_notifications(3)

        marked = await user_call(url, user, "POST", "/v1/me/notifications/read", json={"ids": [ids[0]]})
        assert marked.status_code == 200, marked.text
        assert marked.json()["updated"] == 1 and marked.json()["unread"] == 2
        for device in (phone, laptop):
            await device._until(lambda d=device: len(_states(d)) >= 1, 10, "state frame")
            (state,) = _states(device)
            assert state["action"] == "read" and state["ids"] == [ids[0]] and state["unread"] == 2
            assert state["at"] is not None and state["cursor"] == marked.json()["cursor"] and state["seq"] == 3

        # Already read: nothing changes and no frame is pushed; the next frame names only what changed.
        await user_call(url, user, "POST", "/v1/me/notifications/read", json={"ids": [ids[0], ids[0]]})

        # The laptop marks everything read over its own socket: the phone is told.
        head = laptop.notifications[-1]["cursor"]
        await laptop.ws.send(json.dumps({"type": "read", "up_to": head}))
        await phone._until(lambda: len(_states(phone)) >= 2, 10, "second state frame")
        assert _states(phone)[1]["up_to"] == head and _states(phone)[1]["unread"] == 0

        archived = await user_call(url, user, "POST", "/v1/me/notifications/archive", json={"ids": ids[1:]})
        assert archived.json()["updated"] == 2
        unread = await user_call(url, user, "POST", "/v1/me/notifications/unread", json={"ids": [ids[2]]})
        assert unread.json() == {"updated": 1, "unread": 0, "cursor": unread.json()["cursor"]}  # archived: not counted
        await phone._until(lambda: len(_states(phone)) >= 4, 10, "archive and unread frames")
        assert [s["action"] for s in _states(phone)] == ["read", "read", "archive", "unread"]
        assert (await user_call(url, user, "GET", "/v1/me/unread-count")).json()["unread"] == 0
        await phone.close()
        await laptop.close()


async def test_a_device_offline_during_three_changes_catches_up_with_the_right_badge(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url, user = service.url, token("omar")
        ids = await _deliver(url, "omar", ["one", "two", "three", "four"])
        tablet = await Device.connect(service.ws_url, user)
        assert (await tablet.ready())["unread"] == 4
        cursor = (await poll(url, user)).json()["next_cursor"]
        await tablet.close()  # offline from here

        await user_call(url, user, "POST", "/v1/me/notifications/read", json={"ids": ids[:2]})
        await user_call(url, user, "POST", "/v1/me/notifications/archive", json={"ids": [ids[3]]})
        await user_call(url, user, "POST", "/v1/me/notifications/unread", json={"ids": [ids[0]]})
        (fifth,) = await _deliver(url, "omar", ["five"])

        back = await Device.connect(service.ws_url, user, cursor)
        ready = await back.ready()
        assert ready["unread"] == 3  # one, three and five; two is read, four archived
        (missed,) = back.notifications
        assert missed["id"] == fifth and missed["read_at"] is None
        items = {e["id"]: e for e in (await poll(url, user)).json()["items"]}
        assert items[ids[0]]["read_at"] is None and items[ids[1]]["read_at"] is not None
        assert items[ids[3]]["archived_at"] is not None and items[ids[2]]["archived_at"] is None
        await back.close()


async def test_filters_and_up_to_and_bad_input(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url, user = service.url, token("lena")
        ids = await _deliver(url, "lena", ["n1", "n2", "n3", "n4", "n5"])
        page = (await poll(url, user)).json()
        third = page["items"][2]["cursor"]
        up_to = await user_call(url, user, "POST", "/v1/me/notifications/read", json={"up_to": third})
        assert up_to.json()["updated"] == 3 and up_to.json()["unread"] == 2
        again = await user_call(url, user, "POST", "/v1/me/notifications/read", json={"up_to": third})
        assert again.json()["updated"] == 0  # read entries keep their first read_at
        both = await user_call(url, user, "POST", "/v1/me/notifications/read", json={"ids": [ids[0], ids[0]]})
        assert both.json()["updated"] == 0
        await user_call(url, user, "POST", "/v1/me/notifications/archive", json={"ids": [ids[0], ids[4]]})

        def titles(response: object) -> list[str]:
            return [e["title"] for e in response.json()["items"]]  # type: ignore[attr-defined]

        head = page["next_cursor"]
        assert titles(await poll(url, user, unread="true")) == ["n4", "n5"]
        assert titles(await poll(url, user, unread="false")) == ["n1", "n2", "n3"]
        assert titles(await poll(url, user, archived="true")) == ["n1", "n5"]
        assert titles(await poll(url, user, before=head, unread="true", archived="false")) == ["n4"]
        assert titles(await poll(url, user, before=head, archived="false", limit=2)) == ["n4", "n3"]
        unarchived = await user_call(url, user, "POST", "/v1/me/notifications/unarchive", json={"ids": [ids[4]]})
        assert unarchived.json()["unread"] == 2

        for path, body, code, field in (
            ("/v1/me/notifications/read", {}, "invalid_request", "ids"),
            ("/v1/me/notifications/read", {"ids": [ids[0]], "up_to": third}, "invalid_request", "ids"),
            ("/v1/me/notifications/read", {"ids": []}, "invalid_request", "ids"),
            ("/v1/me/notifications/read", {"ids": ["not-an-id"]}, "invalid_request", "ids[0]"),
            ("/v1/me/notifications/read", {"up_to": "garbage"}, "invalid_cursor", "up_to"),
            ("/v1/me/notifications/read", {"ids": [ids[0]], "extra": 1}, "invalid_request", "extra"),
            ("/v1/me/notifications/shred", {"ids": [ids[0]]}, "invalid_request", "action"),
        ):
            response = await user_call(url, user, "POST", path, json=body)
            assert response.status_code == 400, (body, response.text)
            assert response.json()["code"] == code and response.json().get("field") == field, response.json()
        assert (await poll(url, user, unread="maybe")).status_code == 400
        gone = await user_call(url, user, "POST", "/v1/me/notifications/read", json={"up_to": third.replace("A", "B", 1)})
        assert gone.status_code in (400, 410)
        # Another user's ids change nothing of theirs.
        other = await user_call(url, token("mallory"), "POST", "/v1/me/notifications/read", json={"ids": ids})
        assert other.json()["updated"] == 0
        assert (await user_call(url, user, "GET", "/v1/me/unread-count")).json()["unread"] == 2
