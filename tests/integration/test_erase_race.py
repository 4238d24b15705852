"""An erase racing an in-flight fan-out to the same user (PostgreSQL, where they really overlap)."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from service.store.engine import Database
from service.store.repository import NewNotification, Repository


def new(title: str) -> NewNotification:
    return NewNotification("default", "test", title, None, {}, "normal", ["victim"], "p", None, None)


@pytest.mark.parametrize("database_url", [pytest.param("pg", marks=pytest.mark.pg)], indirect=True)
async def test_an_erase_during_a_fan_out_leaves_an_empty_new_epoch(database_url: str) -> None:
    database = Database.connect(database_url)
    repository = Repository(database)
    blocker = create_async_engine(database_url)
    try:
        inflight, _ = await repository.accept(new("in flight"))
        async with blocker.connect() as lock:
            # Hold the notification row: the fan-out stalls after allocating the seq and inserting
            # the entry, still holding the user's counter row, as a slow transaction would.
            await lock.execute(text("SELECT 1 FROM notifications WHERE id = :id FOR UPDATE"), {"id": inflight.id})
            fan_out = asyncio.create_task(repository.fan_out(inflight, ["victim"]))
            await asyncio.sleep(0.3)
            erase = asyncio.create_task(repository.erase_inbox("default", "victim"))
            await asyncio.sleep(0.3)
            assert not fan_out.done() and not erase.done()
            await lock.rollback()
        await asyncio.wait_for(fan_out, 10)
        head = await asyncio.wait_for(erase, 10)
        assert (head.epoch, head.seq) == (2, 0)
        page = await repository.page_after("default", "victim", None, 10)
        assert page.items == [], "an entry of the erased epoch survived"
        later, _ = await repository.accept(new("after the erase"))
        (delivered,) = await repository.fan_out(later, ["victim"])
        assert (delivered.epoch, delivered.entry.seq) == (2, 1)
        assert [e.id for e in (await repository.page_after("default", "victim", None, 10)).items] == [later.id]
    finally:
        await blocker.dispose()
        await database.dispose()
