"""The fault rig: a whole deployment that the test owns and may break, and the books it keeps.

Its own redis-server, its own database (a SQLite file, or a PostgreSQL database
reached through a :class:`~tests.proxy.Proxy` that can cut it off), two service
processes behind a proxy (the load balancer), one worker, a steady producer and
a few devices: SDK ``Subscriber`` objects, each the application of one user.

The books: every notification the producer got a 202 for (with its recipients and
the moment), and every entry each application received (after the SDK's dedupe),
with the moment. :meth:`Rig.verdict` compares them, and each inbox in the store,
with what was accepted: lost, duplicated and out-of-order counts, per device.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url
from tidings_client import Backoff, ConnectionState, Subscriber

from service.store.migrate import upgrade
from tests.devices import token
from tests.harness import API_KEY, Deployment, RedisServer, Service, Worker, free_port
from tests.proxy import Proxy

PING_S = 1.0
"""The rig's ping interval: a silent peer is found within two of these."""

RIG_ENV = {
    "TIDINGS_PING_INTERVAL_S": str(PING_S),
    "TIDINGS_POSITIONING_INTERVAL_S": "1",
    "TIDINGS_SWEEP_AFTER_S": "2",
    "TIDINGS_JOB_TIMEOUT_S": "2",
    "TIDINGS_DRAIN_S": "1.5",
    "TIDINGS_SEND_TIMEOUT_S": "1",
}


NORMAL_DELAY_S = 1.0
"""From 202 to the application, beyond this an entry counts as held up by the fault."""
_DOWN = (ConnectionState.DISCONNECTED, ConnectionState.CONNECTING)
_UP = (ConnectionState.LIVE, getattr(ConnectionState, "DEGRADED", ConnectionState.LIVE))


@dataclass
class Device:
    """One user's application: what it received, and how its connection went."""

    user: str
    received: list[tuple[str, int, float]] = field(default_factory=list)
    """(notification id, seq, monotonic arrival time), in the order the application saw them."""
    states: list[tuple[float, ConnectionState]] = field(default_factory=list)
    subscriber: Subscriber | None = None
    task: asyncio.Task[None] | None = None

    def state(self) -> ConnectionState | None:
        """The latest connection state."""
        return self.states[-1][1] if self.states else None

    def ids(self) -> set[str]:
        """The ids received so far."""
        return {item[0] for item in self.received}


@dataclass
class Accepted:
    """A notification the producer got a 202 for."""

    id: str
    users: tuple[str, ...]
    at: float
    degraded: bool


@dataclass
class Verdict:
    """What one device's application and inbox hold, compared with what was accepted."""

    user: str
    expected: int
    lost: int
    duplicated: int
    out_of_order: int
    store_lost: int
    store_duplicated: int
    unexpected: int
    recovery_s: float
    worst_delay_s: float
    reconnected_s: float | None

    @property
    def clean(self) -> bool:
        """Nothing lost, nothing twice, nothing out of order, nothing that was not accepted."""
        return not (self.lost or self.duplicated or self.out_of_order or self.store_lost
                    or self.store_duplicated or self.unexpected)


class Rig:
    """The deployment of one fault test; build it with :func:`rig`."""

    def __init__(self, base: Path, database_url: str, database_proxy: Proxy | None, **env: str) -> None:
        self.redis = RedisServer(free_port(), base / "redis")
        self.database_url = database_url
        self.database_proxy = database_proxy
        self.env = {**RIG_ENV, **env}
        self.deployment: Deployment | None = None
        self.services: list[Service] = []
        self.workers: list[Worker] = []
        self.balancer: Proxy | None = None
        self.devices: list[Device] = []
        self.accepted: dict[str, Accepted] = {}
        self.refused: list[str] = []
        self._producing: asyncio.Task[None] | None = None
        self._stop_producing = asyncio.Event()
        self._sequence = 0
        self.close_log: list[str] = []

    # -- processes ----------------------------------------------------------------------

    async def start(self, services: int = 2) -> None:
        """Redis, the services behind the balancer, one worker; all ready."""
        await asyncio.to_thread(self.redis.start)
        self.deployment = Deployment(redis_url=self.redis.url, database_url=self.database_url)
        self.services = [Service(self.deployment, **self.env) for _ in range(services)]
        self.workers = [self.start_worker()]
        await asyncio.gather(*(service.wait_ready_async() for service in self.services))
        self.balancer = Proxy([service.port for service in self.services]).start()

    def start_worker(self) -> Worker:
        """One more worker process."""
        assert self.deployment is not None
        worker = Worker(self.deployment, **self.env)
        self.workers.append(worker)
        return worker

    async def stop(self) -> None:
        """Everything this rig started, by pid."""
        await self.stop_producer()
        for device in self.devices:
            if device.subscriber is not None:
                await device.subscriber.close()
            if device.task is not None:
                device.task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await device.task
        processes = [*self.services, *self.workers]
        for process in processes:  # all at once: their shutdowns overlap
            process.terminate()
        for process in processes:
            await asyncio.to_thread(process.stop, 5)
        if self.balancer is not None:
            self.balancer.stop()
        await asyncio.to_thread(self.redis.stop)

    @property
    def url(self) -> str:
        """The balancer's URL: what producers and devices talk to."""
        assert self.balancer is not None
        return self.balancer.url

    # -- devices ------------------------------------------------------------------------

    async def connect_devices(self, users: list[str], url: str | None = None, **options: Any) -> list[Device]:
        """A subscriber per user on ``url`` (the balancer by default); returns once all are live."""
        devices = [Device(user) for user in users]
        for device in devices:
            device.subscriber = self._subscriber(device, url or self.url, **options)
            device.task = asyncio.create_task(self._consume(device))
        self.devices += devices
        await self.wait_until(lambda: all(d.state() is ConnectionState.LIVE for d in devices), 20, "devices live")
        return devices

    def _subscriber(self, device: Device, url: str, **options: Any) -> Subscriber:
        def record(state: ConnectionState) -> None:
            device.states.append((time.monotonic(), state))

        options.setdefault("backoff", Backoff(base=0.1, cap=2.0))
        return Subscriber(url, lambda: token(device.user), ping_interval=PING_S, on_connection_state=record, **options)

    @staticmethod
    async def _consume(device: Device) -> None:
        assert device.subscriber is not None
        async for entry in device.subscriber:
            device.received.append((entry.id, entry.seq, time.monotonic()))

    # -- producing ----------------------------------------------------------------------

    def start_producer(self, users: list[str], every_s: float = 0.1) -> None:
        """Send to ``users`` every ``every_s`` until :meth:`stop_producer`, each send retried
        (same Idempotency-Key) until it is accepted."""
        self._stop_producing.clear()
        self._producing = asyncio.create_task(self._produce(users, every_s))

    async def stop_producer(self) -> None:
        """Stop sending; the send in flight is finished (accepted) first."""
        self._stop_producing.set()
        if self._producing is not None:
            await self._producing
            self._producing = None

    async def _produce(self, users: list[str], every_s: float) -> None:
        async with httpx.AsyncClient(timeout=5, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            while not self._stop_producing.is_set():
                self._sequence += 1
                await self.send(client, users, f"n{self._sequence}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop_producing.wait(), every_s)

    async def send(self, client: httpx.AsyncClient, users: list[str], title: str, **extra: Any) -> Accepted:
        """POST one notification, retrying the same key through any fault until it is accepted."""
        key = secrets.token_hex(8)
        body = {"type": "fault.test", "title": title, "recipients": {"users": users}, **extra}
        deadline = time.monotonic() + 60
        while True:
            try:
                response = await client.post(f"{self.url}/v1/notifications", json=body, headers={"Idempotency-Key": key})
                if response.status_code == 202:
                    answer = response.json()
                    accepted = Accepted(answer["id"], tuple(users), time.monotonic(), bool(answer.get("degraded")))
                    self.accepted.setdefault(accepted.id, accepted)
                    return self.accepted[accepted.id]
                self.refused.append(f"{response.status_code} {response.text[:100]}")
                assert response.status_code >= 500, response.text  # a 4xx is the test's bug
            except httpx.HTTPError as exc:
                self.refused.append(type(exc).__name__)
            assert time.monotonic() < deadline, f"not accepted within 60 s: {self.refused[-5:]}"
            await asyncio.sleep(0.2)

    # -- checking -----------------------------------------------------------------------

    @staticmethod
    async def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll ``condition`` every 20 ms; the seconds it took. Fails the test after ``timeout``."""
        started = time.monotonic()
        while not condition():
            assert time.monotonic() - started < timeout, f"timed out after {timeout} s waiting for: {what}"
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    def expected(self, user: str) -> set[str]:
        """The ids accepted for ``user``."""
        return {item.id for item in self.accepted.values() if user in item.users}

    async def settle(self, timeout: float = 40) -> None:
        """Wait until every device received everything accepted for its user (or time out)."""
        def done() -> bool:
            return all(self.expected(device.user) <= device.ids() for device in self.devices)

        with contextlib.suppress(AssertionError):
            await self.wait_until(done, timeout, "every accepted notification received")

    async def inbox(self, user: str) -> list[str]:
        """Every id in ``user``'s inbox, in seq order, read through the polling API."""
        ids: list[str] = []
        cursor: str | None = None
        async with httpx.AsyncClient(timeout=10, headers={"Authorization": f"Bearer {token(user)}"}) as client:
            while True:
                params = {"limit": "500", **({"after": cursor} if cursor else {})}
                page = (await client.get(f"{self.url}/v1/me/notifications", params=params)).json()
                ids += [item["id"] for item in page["items"]]
                cursor = page["next_cursor"]
                if not page["has_more"]:
                    return ids

    async def verdict(self, started: float) -> list[Verdict]:
        """Compare, per device, what arrived and what the inbox holds with what was accepted.

        Recovery: seconds from the fault's start until the device was back to normal delivery,
        i.e. until the last arrival of an entry the fault held up (more than ``NORMAL_DELAY_S``
        from its 202 to the application), 0 when none was held up.
        """
        verdicts = []
        for device in self.devices:
            expected = self.expected(device.user)
            got = [item[0] for item in device.received]
            seqs = [item[1] for item in device.received]
            stored = await self.inbox(device.user)
            arrivals = {item[0]: item[2] for item in device.received}
            delays = {
                a.id: arrivals[a.id] - a.at
                for a in self.accepted.values()
                if device.user in a.users and a.id in arrivals and a.at >= started - 2
            }
            held = [arrivals[i] - started for i, delay in delays.items() if delay > NORMAL_DELAY_S]
            verdicts.append(Verdict(
                user=device.user,
                expected=len(expected),
                lost=len(expected - set(got)),
                duplicated=len(got) - len(set(got)),
                out_of_order=sum(1 for a, b in zip(seqs, seqs[1:], strict=False) if b <= a),
                store_lost=len(expected - set(stored)),
                store_duplicated=len(stored) - len(set(stored)),
                unexpected=len(set(stored) - expected) + len(set(got) - expected),
                recovery_s=max([0.0, *held]),
                worst_delay_s=max([0.0, *delays.values()]),
                reconnected_s=_reconnected(device, started),
            ))
        return verdicts


def _reconnected(device: Device, started: float) -> float | None:
    """Seconds from ``started`` until the device delivered again after it lost its connection."""
    lost_at = next((at for at, state in device.states if at >= started and state in _DOWN), None)
    if lost_at is None:
        return None
    back = next((at for at, state in device.states if at > lost_at and state in _UP), None)
    return None if back is None else back - started


REPORTS: list[str] = []
"""Every fault's table, repeated in the test run's summary (``tests/conftest.py``)."""


def report(fault: str, verdicts: list[Verdict], rig: Rig, extra: str = "") -> None:
    """Print the fault's table (run pytest with -s to see it; CI logs keep it)."""
    lines = [f"\nFAULT {fault}: {len(rig.accepted)} accepted"
             f" ({sum(a.degraded for a in rig.accepted.values())} degraded), {len(rig.refused)} refused tries {extra}"]
    for v in verdicts:
        lines.append(
            f"  {v.user}: expected={v.expected} lost={v.lost} duplicated={v.duplicated} out_of_order={v.out_of_order}"
            f" store_lost={v.store_lost} store_duplicated={v.store_duplicated} unexpected={v.unexpected}"
            f" recovery={v.recovery_s:.2f}s worst_delay={v.worst_delay_s:.2f}s"
            + (f" reconnected={v.reconnected_s:.2f}s" if v.reconnected_s is not None else "")
        )
    print("\n".join(lines))
    REPORTS.extend(lines)


class CloseLog(logging.Handler):
    """Collects the SDK's "stream closed (code: reason)" lines."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@asynccontextmanager
async def rig(pg_admin: Callable[[str], Any] | None, pg_url: Callable[[str], str] | None, **env: str) -> AsyncIterator[Rig]:
    """A started rig on SQLite, or on PostgreSQL (through a proxy) when ``pg_admin`` is given."""
    base = Path(tempfile.mkdtemp(prefix="tidings-fault-"))
    database_proxy: Proxy | None = None
    name = ""
    if pg_admin is None:
        url = f"sqlite+aiosqlite:///{base / 'tidings.db'}"
        await asyncio.to_thread(upgrade, url)
    else:
        assert pg_url is not None
        name = "tidings_fault_" + secrets.token_hex(6)
        await pg_admin(f'CREATE DATABASE "{name}"')
        direct = pg_url(name)
        await asyncio.to_thread(upgrade, direct)
        database_proxy = Proxy([make_url(direct).port or 5432]).start()
        url = make_url(direct).set(port=database_proxy.port).render_as_string(hide_password=False)
    the_rig = Rig(base, url, database_proxy, **env)
    try:
        await the_rig.start()
        yield the_rig
    finally:
        await the_rig.stop()
        if database_proxy is not None:
            database_proxy.stop()
        if pg_admin is not None:
            await pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        shutil.rmtree(base, ignore_errors=True)  # the SQLite file and Redis directory it made
