"""A TCP proxy the tests own, on loopback: the "load balancer" in front of service processes.

It runs its own event loop in a thread, so it keeps forwarding whatever the test's
loop is doing. Each new connection goes to the next backend (round robin) that
accepts it, as a balancer that health-checks by connecting would. With
``refuse_upgrades`` set, a request asking for a WebSocket upgrade is answered
``403`` and closed, as by a corporate proxy that blocks WebSockets; plain HTTP
still passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections.abc import Sequence

from tests.harness import free_port

_REFUSAL = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_HEAD_LIMIT = 64 * 1024


class Proxy:
    """Forwards 127.0.0.1:``port`` to the backends' ports."""

    def __init__(self, backends: Sequence[int], *, refuse_upgrades: bool = False) -> None:
        self.port = free_port()
        self.refuse_upgrades = refuse_upgrades
        self.refused_upgrades = 0
        self._backends = list(backends)
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, name="test-proxy", daemon=True)

    @property
    def url(self) -> str:
        """The proxy's HTTP base URL."""
        return f"http://127.0.0.1:{self.port}"

    def set_backends(self, backends: Sequence[int]) -> None:
        """Send new connections to these ports from now on (open ones stay where they are)."""
        self._backends = list(backends)

    def start(self) -> Proxy:
        """Listen, in the proxy's own thread."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        return self

    def stop(self) -> None:
        """Close the listener and every forwarded connection, then end the thread."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            await self._forward(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._pipes.discard(task)
            writer.close()

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = b""
        if self.refuse_upgrades:
            # Read the request head to see what it asks for before any backend sees it.
            while b"\r\n\r\n" not in head and len(head) < _HEAD_LIMIT:
                chunk = await reader.read(4096)
                if not chunk:
                    return
                head += chunk
            if b"upgrade: websocket" in head.lower():
                self.refused_upgrades += 1
                writer.write(_REFUSAL)
                await writer.drain()
                return
        upstream = await self._connect()
        if upstream is None:
            return  # no backend accepts: the client sees its connection closed
        up_reader, up_writer = upstream
        try:
            if head:
                up_writer.write(head)
            await asyncio.gather(_pump(reader, up_writer), _pump(up_reader, writer))
        finally:
            up_writer.close()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        backends = list(self._backends)
        start = next(self._turn)
        for offset in range(len(backends)):
            port = backends[(start + offset) % len(backends)]
            with contextlib.suppress(OSError):
                return await asyncio.open_connection("127.0.0.1", port)
        return None


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    """Copy until EOF or an error, then close the other side too (like a balancer would)."""
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.close()
