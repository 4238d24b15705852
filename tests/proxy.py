"""A TCP proxy the tests own, on loopback: the network between clients and servers, with faults.

It runs its own event loop in a thread, so it keeps forwarding whatever the test's
loop is doing. Each new connection goes to the next backend (round robin) that
accepts it, as a balancer that health-checks by connecting would. Faults:

- ``refuse_upgrades``: a request asking for a WebSocket upgrade is answered ``403``
  and closed, as by a corporate proxy that blocks WebSockets; plain HTTP passes.
- :meth:`cut` / :meth:`restore`: the server is gone (every connection closed, new
  ones refused), then back on the same port.
- :meth:`freeze` / :meth:`thaw`: no byte moves on any connection, which stay open:
  a device whose socket stopped draining, or a path that went silent.
- :meth:`blackhole`: connections to one backend go silent (no FIN, no RST) and new
  connections avoid it: a host that vanished, which only heartbeats can detect.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import threading
from collections.abc import Sequence

from tests.harness import free_port

_REFUSAL = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
_HEAD_LIMIT = 64 * 1024


class Proxy:
    """Forwards 127.0.0.1:``port`` to the backends' ports."""

    def __init__(
        self, backends: Sequence[int], *, refuse_upgrades: bool = False, upstream_rcvbuf: int | None = None
    ) -> None:
        self.port = free_port()
        self.refuse_upgrades = refuse_upgrades
        self.refused_upgrades = 0
        self._backends = list(backends)
        self._silent: set[int] = set()
        self._rcvbuf = upstream_rcvbuf
        self._turn = itertools.count()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
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
        self._call(self._listen())
        return self

    def stop(self) -> None:
        """Close the listener and every forwarded connection, then end the thread."""
        if self._thread.is_alive():
            self._call(self._close_all())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def cut(self) -> None:
        """Close every connection and stop listening: to its clients, the server is down."""
        self._call(self._close_all())

    def restore(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen())

    def freeze(self) -> None:
        """Stop moving bytes on every connection, leaving them open."""
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def thaw(self) -> None:
        """Move bytes again."""
        self._loop.call_soon_threadsafe(self._flowing.set)

    def blackhole(self, backend: int) -> None:
        """Connections to ``backend`` go silent for good; new ones go to the other backends."""
        self._silent.add(backend)

    def __enter__(self) -> Proxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _call(self, coroutine: object) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)  # type: ignore[arg-type]

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)

    async def _close_all(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
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
        port, up_reader, up_writer = upstream
        try:
            if head:
                up_writer.write(head)
            await asyncio.gather(self._pump(reader, up_writer, port), self._pump(up_reader, writer, port))
        finally:
            up_writer.close()

    async def _connect(self) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter] | None:
        backends = [port for port in self._backends if port not in self._silent]
        start = next(self._turn)
        for offset in range(len(backends)):
            port = backends[(start + offset) % len(backends)]
            with contextlib.suppress(OSError):
                sock = socket.socket()
                sock.setblocking(False)
                if self._rcvbuf is not None:  # before connecting, so the window is small from the start
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._rcvbuf)
                try:
                    await self._loop.sock_connect(sock, ("127.0.0.1", port))
                except OSError:
                    sock.close()
                    raise
                reader, writer = await asyncio.open_connection(sock=sock)
                return port, reader, writer
        return None

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, backend: int) -> None:
        """Copy until EOF or an error, then close the other side too (as a balancer would)."""
        try:
            while True:
                await self._flowing.wait()
                if backend in self._silent:
                    await asyncio.Event().wait()  # silent until the proxy stops
                chunk = await source.read(65536)
                await self._flowing.wait()
                if backend in self._silent:  # not even the EOF of a killed backend gets through
                    await asyncio.Event().wait()
                if not chunk:
                    break
                sink.write(chunk)
                await sink.drain()
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.close()
