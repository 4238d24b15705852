"""Stopping a service process without dropping its devices on the floor.

On SIGTERM uvicorn would close every WebSocket at once with 1012, so every
device would reconnect (and replay) at the same instant somewhere else. This
server first stops accepting, then lets the hub close the streams spread over
``TIDINGS_DRAIN_S`` and answer the long-polls, and only then runs uvicorn's
own shutdown (in-flight requests, background deliveries, the lifespan).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Awaitable, Callable

import uvicorn
from litestar import Litestar

log = logging.getLogger("tidings")


class DrainingServer(uvicorn.Server):
    """A uvicorn server that runs ``drain`` between closing its listener and its connections."""

    def __init__(self, config: uvicorn.Config, drain: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._drain = drain

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Stop accepting, drain the streams, then shut down as uvicorn does."""
        for server in self.servers:
            server.close()  # new connections now go to other instances
        if not self.force_exit:
            try:
                await self._drain()
            except Exception:  # noqa: BLE001 - a failed drain must not keep the process alive
                log.exception("drain failed; closing the remaining connections at once")
        await super().shutdown(sockets)


async def drain(app: Litestar, window_s: float) -> None:
    """Answer the app's long-polls now, and close its streams over ``window_s``."""
    services = getattr(app.state, "services", None)
    if services is None:
        return
    services.stopping.set()
    hub = services.hub
    if hub is not None:
        log.info("draining %d streams over %.1f s", hub.stream_count, window_s)
        await hub.drain(window_s)
