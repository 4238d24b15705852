"""One device's stream on this process, whatever carries it (WebSocket or SSE).

Both transports build a :class:`Stream` the same way and run it the same way:
subscribed (and acknowledged) before the replay reads the store, so nothing can
slip between, and always unregistered from the hub afterwards.
"""

from __future__ import annotations

import asyncio

from service.auth.tokens import Principal
from service.domain.channels import inbox_channel
from service.domain.codes import CloseCode, ErrorCode
from service.domain.cursor import Cursor
from service.domain.frames import error_frame
from service.gateway.hub import Hub
from service.gateway.stream import Send, Stream, StreamClosed
from service.lifespan import Services

SUBSCRIBE_TIMEOUT_S = 5.0
"""How long a stream waits for Redis to acknowledge its channel before giving up (1012)."""


def new_stream(services: Services, principal: Principal, send: Send) -> Stream:
    """A stream for ``principal`` that writes with ``send``, sized by the settings."""
    settings = services.settings
    return Stream(
        principal,
        services.repository,
        send,
        page=settings.replay_page,
        max_buffered_bytes=settings.outbox_max_bytes,
        ping_interval_s=settings.ping_interval_s,
    )


async def run_joined(services: Services, hub: Hub, stream: Stream, cursor: Cursor | None) -> StreamClosed:
    """Join the hub, run the stream until it must close, leave; return why it closed."""
    principal = stream.principal
    channel = inbox_channel(services.settings.channel_prefix, principal.app_id, principal.user_id)
    if services.stopping.is_set():  # a request that came in on a kept-alive connection while stopping
        return StreamClosed(CloseCode.SERVICE_RESTART, "service restarting; reconnect")
    try:
        try:
            await asyncio.wait_for(hub.join(channel, stream), SUBSCRIBE_TIMEOUT_S)
        except TimeoutError:
            message = "live channel unavailable; poll instead"
            return StreamClosed(CloseCode.SERVICE_RESTART, message, error_frame(ErrorCode.UNAVAILABLE, message))
        return await stream.run(cursor)
    finally:
        await hub.leave(channel, stream)
