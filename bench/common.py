"""What every benchmark shares: the process stack, connected devices, percentiles.

The stack is the same one the e2e tests use (``tests.harness``): a redis-server
of our own on a free port, a fresh SQLite file (or the caller's PostgreSQL),
one service and N workers. Devices are ``websockets`` clients that have seen
``ready``; each records the wall-clock receipt time of every notification.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from service.auth.tokens import mint_user_token
from tests.harness import (
    API_KEY,
    JWT_SECRET,
    Deployment,
    Process,
    RedisServer,
    Service,
    Worker,
    free_port,
)

PRODUCER_HEADERS = {"Authorization": f"Bearer {API_KEY}"}
CONNECT_CONCURRENCY = 50
"""Handshakes in flight at once: enough to be quick, few enough not to overflow the accept backlog."""


def now_us() -> int:
    """Wall-clock microseconds: the unit of the ``ts`` that latency frames carry."""
    return time.time_ns() // 1000


@dataclass
class Stack:
    """A running deployment: its service, workers and Redis."""

    service: Service
    workers: list[Worker]
    redis: RedisServer

    @property
    def processes(self) -> list[Process]:
        """Every child process, service first."""
        return [self.service, *self.workers]

    def problems(self) -> list[str]:
        """Log lines of the children that look like trouble (errors, tracebacks, exits)."""
        lines = []
        for process in self.processes:
            if not process.alive():
                lines.append(f"{process.name}: exited with {process.process.returncode}")
            for line in process.output().splitlines():
                if any(word in line for word in ("ERROR", "CRITICAL", "Traceback", "Exception")):
                    lines.append(f"{process.name}: {line.strip()}")
        return lines


@contextmanager
def stack(database_url: str | None, workers: int = 1, pin: bool = False, **env: str) -> Iterator[Stack]:
    """Start Redis, migrate the database, start one service and ``workers`` workers; stop all at exit.

    Args:
        database_url: the caller's database (already created); None means a temp SQLite file.
        workers: how many worker processes.
        pin: put the service on CPU 0 and everything else on the other CPUs, as the peer runs do.
        **env: extra ``TIDINGS_*`` settings for every process.
    """
    from service.store.migrate import upgrade

    with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
        redis = RedisServer(free_port(), Path(tmp) / "redis")
        url = database_url or f"sqlite+aiosqlite:///{tmp}/bench.db"
        children: list[Process] = []
        redis.start()
        try:
            upgrade(url)
            deployment = Deployment(redis.url, url, extra={"TIDINGS_LOG_LEVEL": "warning", **env})
            service = Service(deployment)
            children.append(service)
            children.extend(Worker(deployment) for _ in range(workers))
            if pin:
                _pin(service.pid, [p.pid for p in children[1:]] + [redis.process.pid])  # type: ignore[union-attr]
            service.wait_ready(30)
            yield Stack(service, children[1:], redis)  # type: ignore[arg-type]
        finally:
            for child in children:
                child.stop(5)
            redis.stop()


def _pin(server_pid: int, other_pids: list[int]) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return
    os.sched_setaffinity(server_pid, {cpus[0]})
    for pid in [*other_pids, os.getpid()]:
        os.sched_setaffinity(pid, set(cpus[1:]))


@dataclass
class Device:
    """One connected WebSocket client of one user."""

    user: str
    socket: ClientConnection
    received: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    """(receipt time in µs, entry) for each notification frame."""


class Devices:
    """Many devices, their receive loops, and a way to wait for a number of receipts."""

    def __init__(self, on_entry: Callable[[Device, int, dict[str, Any]], None] | None = None) -> None:
        self.devices: list[Device] = []
        self.total = 0
        self._on_entry = on_entry
        self._tasks: list[asyncio.Task[None]] = []
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    async def connect(self, ws_url: str, users: list[str], timeout: float = 60) -> None:
        """Connect one device per user and return once every one has had ``ready``."""
        gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

        async def one(user: str) -> Device:
            async with gate:
                # No compression and no client pings: the peers' load generator measures the same way.
                socket = await connect(ws_url, compression=None, ping_interval=None, open_timeout=timeout, max_size=2**20)
                await socket.send(json.dumps({"type": "auth", "token": mint_user_token(JWT_SECRET, user, 3600)}))
                while True:
                    frame = json.loads(await socket.recv())
                    if frame["type"] == "ready":
                        return Device(user, socket)
                    if frame["type"] == "error":
                        raise RuntimeError(f"device {user}: {frame}")

        async with asyncio.timeout(timeout):
            self.devices = list(await asyncio.gather(*(one(user) for user in users)))
        self._tasks = [asyncio.create_task(self._receive(device)) for device in self.devices]

    async def _receive(self, device: Device) -> None:
        try:
            async for raw in device.socket:
                received = now_us()
                frame = json.loads(raw)
                if frame.get("type") != "notification":
                    continue
                entry = frame["notification"]
                device.received.append((received, entry))
                if self._on_entry is not None:
                    self._on_entry(device, received, entry)
                self.total += 1
                self._wake()
        except Exception:  # noqa: BLE001 - a dropped device shows up as missing receipts
            pass

    def _wake(self) -> None:
        for count, waiter in self._waiters:
            if self.total >= count and not waiter.done():
                waiter.set_result(None)

    async def wait_total(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` notifications were received in all; False on timeout."""
        if self.total >= count:
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((count, waiter))
        try:
            await asyncio.wait_for(waiter, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters.remove((count, waiter))

    def closed_count(self) -> int:
        """Devices whose socket the server (or the network) closed."""
        return sum(1 for device in self.devices if device.socket.close_code is not None)

    async def close(self) -> None:
        """Close every socket (bounded), then stop the receive loops."""
        try:
            async with asyncio.timeout(10):
                await asyncio.gather(*(d.socket.close() for d in self.devices), return_exceptions=True)
        except TimeoutError:
            pass
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest-rank; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    """The median (the mean of the two middle values for an even count); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


@dataclass
class Result:
    """One benchmark's rows for the final table, and what went wrong on the way."""

    name: str
    setup: str
    rows: list[tuple[str, str]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add(self, metric: str, value: str) -> None:
        """Append a (metric, value) row."""
        self.rows.append((metric, value))
