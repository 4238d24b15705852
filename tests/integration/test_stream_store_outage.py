"""A live stream whose store stops answering keeps its socket, and catches up once it is back."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from sqlalchemy.engine import make_url

from service.auth.tokens import Principal
from service.domain.cursor import Cursor
from service.domain.frames import notification_frame
from service.gateway.stream import Stream, StreamClosed
from service.store.engine import Database
from service.store.repository import NewNotification, Repository
from tests.proxy import Proxy


async def _deliver(repository: Repository, user: str, title: str) -> tuple[int, bytes]:
    stored, _ = await repository.accept(
        NewNotification("default", "test", title, None, {}, "normal", [user], "producer", None, None)
    )
    [item] = await repository.fan_out(stored, [user])
    return item.entry.seq, notification_frame(item.entry)


@pytest.mark.parametrize("database_url", ["pg"], indirect=True)
async def test_a_gap_met_while_the_database_is_down_waits_instead_of_closing(database_url: str) -> None:
    direct = Database.connect(database_url)
    writer = Repository(direct)
    path = Proxy([make_url(database_url).port or 5432]).start()
    proxied = Database.connect(make_url(database_url).set(port=path.port).render_as_string(hide_password=False))
    sent: list[dict[str, object]] = []

    async def send(frame: bytes) -> None:
        sent.append(json.loads(frame))

    stream = Stream(Principal("default", "sam", time.monotonic() + 600), Repository(proxied), send,
                    page=50, max_buffered_bytes=1 << 20, ping_interval_s=0.2)
    try:
        for title in ("one", "two"):
            await _deliver(writer, "sam", title)
        running = asyncio.create_task(stream.run(Cursor(1, 0)))
        while not any(frame["type"] == "ready" for frame in sent):
            await asyncio.sleep(0.02)

        path.cut()  # the stream's database is gone; the writer's is not
        await _deliver(writer, "sam", "three")
        seq, frame = await _deliver(writer, "sam", "four")
        stream.offer(1, seq, frame)  # seq 4 after 2: a gap only the store can fill
        await asyncio.sleep(1.5)
        assert not running.done(), f"the stream ended while the store was down: {running.result()}"
        pings = sum(1 for f in sent if f["type"] == "ping")
        assert pings >= 3, "the stream stopped pinging while it waited for the store"

        path.restore()
        deadline = time.monotonic() + 10
        while len([f for f in sent if f["type"] == "notification"]) < 4:
            assert time.monotonic() < deadline, sent
            await asyncio.sleep(0.05)
        titles = [f["notification"]["title"] for f in sent if f["type"] == "notification"]  # type: ignore[index]
        assert titles == ["one", "two", "three", "four"]
        stream.close(StreamClosed(1000, "done"))
        await asyncio.wait_for(running, 5)
    finally:
        path.stop()
        await proxied.dispose()
        await direct.dispose()
