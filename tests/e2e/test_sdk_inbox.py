"""The SDK against real processes: topics, scheduling and cancel, read state, state frames, expiry.

Everything goes through `tidings_client` (sync clients run in a thread); the
service and worker are real processes on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from tidings_client import (
    AsyncTidingsClient,
    AsyncUserClient,
    Backoff,
    ConflictError,
    NamePage,
    NotFoundError,
    Notification,
    NotificationStatus,
    SendResult,
    StateFrame,
    Subscriber,
    TidingsClient,
    UserClient,
)

from tests.devices import token
from tests.harness import API_KEY, Deployment, Service, Worker, running

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


async def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def delivered(producer: AsyncTidingsClient, notification_id: str, timeout: float = 20) -> NotificationStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = await producer.get(notification_id)
        if status.status == "delivered":
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"not delivered in {timeout}s: {status}")
        await asyncio.sleep(0.05)


async def titles(url: str, user: str) -> list[str]:
    async with AsyncUserClient(url, token(user)) as inbox:
        return [n.title for n in (await inbox.list_notifications()).items]


async def test_topics_scheduling_and_cancel_through_the_sdk(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    odd_user = "org:dee|1+x=y"  # every punctuation a user id may hold, through the path
    with running(service, worker):
        await service.wait_ready_async()
        url = service.url
        async with AsyncTidingsClient(url, API_KEY) as producer:
            assert await producer.subscribe_many("team-x", ["cat", "ann", "ben"]) == 3
            assert await producer.subscribe_many("team-x", ["ann", "eve"]) == 1  # ann already in
            await producer.subscribe("team-x", odd_user)
            await producer.subscribe("team-x", odd_user)  # idempotent
            await producer.subscribe("other.topic", "ann")

            pages: list[list[str]] = []
            page = await producer.subscribers("team-x", limit=2)
            while True:
                pages.append(page.items)
                if not page.has_more:
                    assert page.next_after is None
                    break
                assert page.next_after == page.items[-1]
                page = await producer.subscribers("team-x", after=page.next_after, limit=2)
            assert pages == [["ann", "ben"], ["cat", "eve"], [odd_user]]
            assert [name async for name in producer.iter_subscribers("team-x", page_size=3)] == [
                "ann", "ben", "cat", "eve", odd_user
            ]
            assert await producer.topics_of("ann") == NamePage(["other.topic", "team-x"], False, None)
            assert (await producer.topics_of(odd_user)).items == ["team-x"]

            await producer.unsubscribe("team-x", "cat")
            await producer.unsubscribe("team-x", "eve")
            await producer.unsubscribe("team-x", "eve")  # idempotent
            assert (await producer.subscribers("team-x")).items == ["ann", "ben", odd_user]
            assert (await producer.subscribers("nobody-follows")).items == []

            now = await producer.send(None, "team.news", "to the team", topic="team-x")
            assert now.status == "accepted"
            done = await delivered(producer, now.id)
            assert (done.topic, done.recipients, done.delivered, done.send_at) == ("team-x", 3, 3, None)
            for user in ("ann", "ben", odd_user):
                assert await titles(url, user) == ["to the team"]
            assert await titles(url, "cat") == []

            # Scheduled a few seconds ahead, then cancelled before it is due.
            due = datetime.now(UTC) + timedelta(seconds=3)
            later = await producer.send(None, "team.news", "never", topic="team-x", send_at=due)
            assert later.status == "scheduled"
            scheduled = await producer.get(later.id)
            assert scheduled.status == "scheduled" and scheduled.send_at is not None
            assert abs((scheduled.send_at - due).total_seconds()) < 0.01
            cancelled = await producer.cancel(later.id)
            assert cancelled.status == "cancelled" and cancelled.id == later.id
            assert (await producer.cancel(later.id)).status == "cancelled"  # again: the same answer

            # Too late to cancel a delivered one; an unknown id is not found.
            with pytest.raises(ConflictError) as caught:
                await producer.cancel(now.id)
            assert (caught.value.status, caught.value.code) == (409, "not_cancellable")
            with pytest.raises(NotFoundError):
                await producer.cancel("0" * 32)
            with pytest.raises(NotFoundError):
                await producer.get("..")

        # The sync producer, in a thread: a topic page and a scheduled send that does go out.
        def sync_calls() -> tuple[NamePage, SendResult]:
            with TidingsClient(url, API_KEY) as client:
                page = client.subscribers("team-x", limit=1)
                sent = client.send(["cat"], "direct", "soon", send_at=datetime.now(UTC) + timedelta(seconds=1))
                return page, sent

        page, soon = await asyncio.to_thread(sync_calls)
        assert page == NamePage(["ann"], True, "ann")
        assert soon.status == "scheduled"
        async with AsyncTidingsClient(url, API_KEY) as producer:
            assert (await delivered(producer, soon.id)).recipients == 1
            # Past the cancelled one's due time: it stayed cancelled and reached no one.
            await asyncio.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 1.0)
            assert (await producer.get(later.id)).status == "cancelled"
        assert await titles(url, "ann") == ["to the team"]
        assert await titles(url, "cat") == ["soon"]
        assert "Traceback" not in service.output() + worker.output()


async def test_read_state_filters_state_frames_and_expiry_through_the_sdk(deployment: Deployment) -> None:
    service, worker = Service(deployment), Worker(deployment)
    entries: list[Notification] = []
    states: list[StateFrame] = []
    with running(service, worker):
        await service.wait_ready_async()
        url = service.url
        rita = token("rita")
        device = Subscriber(url, lambda: token("rita"), on_state=states.append,
                            backoff=Backoff(base=0.05, cap=0.5), ping_interval=2.0)

        async def consume() -> None:
            async for notification in device:
                entries.append(notification)

        consumer = asyncio.create_task(consume())
        producer = AsyncTidingsClient(url, API_KEY)
        try:
            await wait_until(lambda: device.unread is not None, 10, "ready")
            assert device.unread == 0
            sent = []
            for i in range(3):  # one after the other, so that seq order is send order
                sent.append(await producer.send(["rita"], "note", f"n{i}"))
                await delivered(producer, sent[-1].id)
            await wait_until(lambda: len(entries) == 3, 10, "three live entries")
            assert [e.id for e in entries] == [r.id for r in sent]
            assert device.unread == 3  # counted locally from the live entries
            first, second, third = entries

            # Another client (the sync UserClient, in a thread) marks one read: the device hears it.
            inbox = UserClient(url, rita)
            try:
                change = await asyncio.to_thread(inbox.mark_read, [first.id])
                assert (change.updated, change.unread, change.cursor) == (1, 2, third.cursor)
                await wait_until(lambda: len(states) == 1, 10, "a state frame")
                assert (states[0].action, states[0].ids, states[0].unread) == ("read", [first.id], 2)
                assert states[0].at is not None and states[0].cursor == third.cursor
                assert device.unread == 2
                again = await asyncio.to_thread(inbox.mark_read, [first.id])
                assert (again.updated, again.unread) == (0, 2)  # already read: left as it was

                page = await asyncio.to_thread(inbox.list_notifications)
                read_at = {n.id: n.read_at for n in page.items}
                assert read_at[first.id] is not None and read_at[second.id] is None
                unread_only = await asyncio.to_thread(lambda: inbox.list_notifications(unread=True))
                assert [n.id for n in unread_only.items] == [second.id, third.id]
                read_only = await asyncio.to_thread(lambda: inbox.list_notifications(unread=False))
                assert [n.id for n in read_only.items] == [first.id]
            finally:
                await asyncio.to_thread(inbox.close)

            async with AsyncUserClient(url, rita) as user:
                archived = await user.archive(up_to=second.cursor)
                assert (archived.updated, archived.unread) == (2, 1)  # an archived entry is not unread
                await wait_until(lambda: len(states) == 2, 10, "archive state frame")
                assert (states[1].action, states[1].up_to, states[1].ids) == ("archive", second.cursor, None)
                assert device.unread == 1
                in_archive = await user.list_notifications(archived=True)
                assert [n.id for n in in_archive.items] == [first.id, second.id]
                assert all(n.archived_at is not None for n in in_archive.items)
                assert [n.id for n in (await user.list_notifications(archived=False)).items] == [third.id]
                # Both filters: unread and archived.
                both = await user.list_notifications(unread=True, archived=True)
                assert [n.id for n in both.items] == [second.id]

                assert (await user.unarchive(ids=[second.id])).unread == 2
                unread_again = await user.mark_unread(ids=[first.id])
                assert unread_again.updated == 1 and unread_again.unread == 2  # still archived
                assert await user.unread_count() == 2
                await wait_until(lambda: len(states) == 4, 10, "unarchive and unread frames")
                assert [s.action for s in states[2:]] == ["unarchive", "unread"]
                assert states[3].at is None

                # Through the stream itself: the answer is a state frame to this device.
                assert await device.mark_read(up_to=device.cursor) is True
                await wait_until(lambda: len(states) == 5, 10, "the stream's own read frame answered")
                assert (states[4].action, states[4].up_to, states[4].unread) == ("read", third.cursor, 0)
                assert device.unread == 0 and await user.unread_count() == 0

                # Expiry: an entry with ttl_seconds=1 vanishes; a device resuming from before it
                # sees a seq gap and carries on.
                before = device.cursor
                assert before == third.cursor
                short = await producer.send(["rita"], "note", "short-lived", ttl_seconds=1)
                await delivered(producer, short.id)
                await wait_until(lambda: len(entries) == 4, 10, "the short-lived entry, live")
                assert entries[3].id == short.id and entries[3].expires_at is not None
                assert device.unread == 1
                await asyncio.sleep(max(0.0, (entries[3].expires_at - datetime.now(UTC)).total_seconds()) + 0.3)
                assert await user.unread_count() == 0
                assert [n.id for n in (await user.list_notifications(after=before)).items] == []
                kept = await producer.send(["rita"], "note", "kept")
                await delivered(producer, kept.id)
                await wait_until(lambda: len(entries) == 5, 10, "the kept entry, live")
                assert entries[4].seq == entries[3].seq + 1 == third.seq + 2

                resumed: list[Notification] = []
                other = Subscriber(url, rita, cursor=before, backoff=Backoff(base=0.05, cap=0.5))
                async with other:
                    # Replayed: seq third+2 right after third; the expired third+1 is never sent.
                    resumed.append(await asyncio.wait_for(anext(other), 10))
                    assert resumed[0].id == kept.id and resumed[0].seq == third.seq + 2
                    assert other.cursor == entries[4].cursor
                    last = await producer.send(["rita"], "note", "after the gap")
                    resumed.append(await asyncio.wait_for(anext(other), 10))
                    assert resumed[1].id == last.id and resumed[1].seq == resumed[0].seq + 1
                    assert other.unread == 2  # ready's 1 (kept), plus the live one
                await wait_until(lambda: len(entries) == 6, 10, "the first device's last entry")
                # The local count added the short-lived entry and nothing told it of the expiry
                # (documented); the server's count is 2, and its next state frame says so.
                assert device.unread == 3 and await user.unread_count() == 2
                assert (await user.mark_read(ids=[kept.id])).unread == 1
                await wait_until(lambda: len(states) == 6, 10, "the correcting state frame")
                assert device.unread == 1
        finally:
            await device.close()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(consumer, 5)
            await producer.aclose()
        assert [e.title for e in entries] == ["n0", "n1", "n2", "short-lived", "kept", "after the gap"]
        assert "Traceback" not in service.output() + worker.output()
