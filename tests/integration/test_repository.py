"""The repository against real databases (SQLite and PostgreSQL): gapless, commit-ordered seqs,
exactly-once entries, idempotent accept."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from service.errors import IdempotencyConflict
from service.store.engine import Database
from service.store.repository import NewNotification, Repository
from service.store.tables import Notification


@pytest.fixture
async def repository(database_url: str) -> AsyncIterator[Repository]:
    database = Database.connect(database_url)
    yield Repository(database)
    await database.dispose()


def new(users: list[str], key: str | None = None, title: str = "t") -> NewNotification:
    return NewNotification("default", "test", title, None, {}, "normal", users, "producer", key, key and f"hash-{title}")


async def test_concurrent_fan_outs_give_every_inbox_seqs_one_to_n(repository: Repository) -> None:
    rng = random.Random(7)
    users = [f"u{i}" for i in range(12)]
    notifications = []
    for i in range(40):
        stored, _ = await repository.accept(new(rng.sample(users, rng.randint(1, 8)), title=str(i)))
        notifications.append(stored)
    # Each notification fanned out twice, concurrently, as racing or retried jobs would.
    work = [repository.fan_out(n, n.recipients) for n in notifications for _ in range(2)]
    rng.shuffle(work)
    await asyncio.gather(*work)
    for user in users:
        page = await repository.page_after("default", user, None, 500)
        expected = [n.id for n in notifications if user in n.recipients]
        assert sorted(e.id for e in page.items) == sorted(expected)
        assert [e.seq for e in page.items] == list(range(1, len(expected) + 1))
        assert (await repository.head("default", user)).seq == len(expected), "a seq was burnt"
    for n in notifications:
        assert (await repository.get_notification(n.id)).status == "delivered"  # type: ignore[union-attr]


async def test_a_rerun_burns_no_seq_and_returns_the_same_entries(repository: Repository) -> None:
    stored, _ = await repository.accept(new(["a", "b"]))
    first = await repository.fan_out(stored, ["a", "b"])
    again = await repository.fan_out(stored, ["b", "a"])
    assert sorted((d.user_id, d.entry.seq) for d in first) == sorted((d.user_id, d.entry.seq) for d in again)
    other, _ = await repository.accept(new(["a"]))
    (next_entry,) = await repository.fan_out(other, ["a"])
    assert next_entry.entry.seq == 2


async def test_idempotency_key_returns_the_first_notification_or_conflicts(repository: Repository) -> None:
    results = await asyncio.gather(*(repository.accept(new(["a"], key="k1")) for _ in range(5)))
    assert len({stored.id for stored, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    with pytest.raises(IdempotencyConflict):
        await repository.accept(new(["a"], key="k1", title="different"))
    other, created = await repository.accept(new(["a"], key="k2"))
    assert created and other.id != results[0][0].id


async def test_an_erase_during_a_multi_chunk_fan_out_neither_stalls_it_nor_undoes_itself(
    repository: Repository,
) -> None:
    stored, _ = await repository.accept(new(["a", "b"]))
    await repository.fan_out(stored, ["a"])  # the first chunk
    await repository.erase_inbox("default", "a")
    assert (await repository.get_notification(stored.id)).status == "accepted"  # type: ignore[union-attr]
    # The second chunk, and a re-run of the whole fan-out (the sweeper's), after the erase:
    await repository.fan_out(stored, ["b"])
    rerun = await repository.fan_out(stored, ["a", "b"])
    assert [d.user_id for d in rerun] == ["b"], "the erased entry came back"
    assert (await repository.page_after("default", "a", None, 10)).items == []
    assert (await repository.get_notification(stored.id)).status == "delivered"  # type: ignore[union-attr]


async def test_the_last_chunks_committing_together_still_mark_it_delivered(repository: Repository) -> None:
    for round_ in range(30):
        users = [f"c{round_}-{i}" for i in range(4)]
        stored, _ = await repository.accept(new(users, title=f"round {round_}"))
        # Two chunk jobs finishing at the same moment, as two workers would.
        await asyncio.gather(repository.fan_out(stored, users[:2]), repository.fan_out(stored, users[2:]))
        status = (await repository.get_notification(stored.id)).status  # type: ignore[union-attr]
        assert status == "delivered", f"round {round_}: every entry stored, status {status}"


async def test_chunks_count_towards_delivered_and_a_progressing_fan_out_is_not_stale(repository: Repository) -> None:
    users = [f"c{i:03d}" for i in range(30)]
    stored, _ = await repository.accept(new(users))
    started = await repository.start(stored.id)
    assert started is not None and started.status == "accepted"
    await repository.fan_out(started, users[:10])
    await repository.fan_out(started, users[:10])  # a re-run counts nothing twice
    status = await repository.status_of(stored.id, "default")
    assert status is not None and status[1] == 10 and status[0].status == "accepted"
    assert status[0].recipients == []  # a status read leaves the recipient list in the store
    # Started a minute ago, but a chunk was just stored: not stale. With no progress since: stale.
    async with repository._db.writer.begin() as connection:
        table = Notification.__table__
        a_minute_ago = datetime.now(UTC) - timedelta(seconds=60)
        await connection.execute(
            table.update().where(table.c.id == stored.id).values(created_at=a_minute_ago, started_at=a_minute_ago)
        )
    assert stored.id not in dict(await repository.stale_accepted(timedelta(seconds=5)))
    assert stored.id in dict(await repository.stale_accepted(timedelta(seconds=-5)))
    await asyncio.gather(repository.fan_out(started, users[10:20]), repository.fan_out(started, users[20:]))
    done = await repository.status_of(stored.id, "default")
    assert done is not None and done[0].status == "delivered" and done[1] == 30
