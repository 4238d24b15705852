"""``GET /v1/events``: the same stream as the WebSocket, as Server-Sent Events.

A :class:`~service.gateway.stream.Stream` does the work (replay, live, gap
fill, state frames, pings, token expiry); this module only turns its frames
into events. An entry is a default (``message``) event whose ``data`` is the
entry and whose ``id`` is its cursor, so a browser's ``EventSource`` resumes by
itself through ``Last-Event-ID``. ``ready`` and ``state`` are named events, a
ping is a comment, and a stream the service ends gets a ``closing`` event.

A cursor that no longer fits the inbox is answered ``410`` before any event:
``EventSource`` stops retrying on a non-200 answer, where it would reconnect
forever to a stream that ends at once.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import HeaderParameter, Parameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from service.aio import cancel_and_wait
from service.api.me import check_current, parse_cursor
from service.api.problems import documented
from service.auth.api_keys import bearer
from service.auth.tokens import verify_user_token
from service.domain.codes import CloseCode
from service.domain.frames import error_frame
from service.errors import Unauthorized, Unavailable
from service.gateway.session import new_stream, run_joined
from service.gateway.stream import StreamClosed
from service.lifespan import Services

RETRY_MS = 2000
"""How long a browser waits before reconnecting after the stream ends."""
QUEUE_FRAMES = 64
"""Frames waiting for the response to write them; a full queue waits (``TIDINGS_SEND_TIMEOUT_S``)."""

_END = b""


def _event(frame: bytes) -> ServerSentEventMessage:
    decoded: dict[str, Any] = json.loads(frame)
    kind = decoded.get("type")
    if kind == "notification":
        entry = decoded["notification"]
        return ServerSentEventMessage(data=json.dumps(entry, separators=(",", ":")), id=entry["cursor"])
    if kind == "ping":
        return ServerSentEventMessage(data=None, comment="ping")
    if kind == "error":
        return ServerSentEventMessage(data=frame.decode(), event="closing")
    return ServerSentEventMessage(data=frame.decode(), event=str(kind))


@get(
    "/v1/events",
    security=[{"userToken": []}],
    responses=documented(400, 401, 410, 503),
    tags=["user"],
    summary="Live entries as Server-Sent Events",
    description=(
        "The WebSocket stream over SSE. Each entry is an event whose `data` is the entry and whose `id` is its "
        "cursor; `ready` and `state` are named events, pings are comments, and a stream the service ends gets a "
        "`closing` event. Resume with `Last-Event-ID` (the browser sends it itself) or `?cursor=`. The token comes "
        "as `Authorization: Bearer` or `?token=` (EventSource cannot set headers; it is redacted from logs). "
        "A cursor from an erased inbox is 410 `cursor_reset`: start again without one."
    ),
)
async def events(
    request: Request[Any, Any, Any],
    services: NamedDependency[Services],
    token: Annotated[str | None, Parameter(description="The user JWT, when no Authorization header can be sent.")] = None,
    cursor: Annotated[str | None, Parameter(description="Resume after this cursor (Last-Event-ID wins).")] = None,
    last_event_id: Annotated[str | None, HeaderParameter(name="Last-Event-ID", required=False)] = None,
) -> ServerSentEvent:
    """A device's live stream over SSE."""
    settings = services.settings
    header = request.headers.get("authorization")
    raw_token = bearer(header) if header else token
    if not raw_token:
        raise Unauthorized("give the token as Authorization: Bearer or ?token=")
    principal = verify_user_token(raw_token, settings.jwt_secret, settings.app_id)
    resume = last_event_id or cursor
    start = None
    if resume:
        field = "Last-Event-ID" if last_event_id else "cursor"
        start = await check_current(services.repository, principal, parse_cursor(resume, field))
    hub = services.hub
    if hub is None:
        raise Unavailable("this instance serves no live streams; poll /v1/me/notifications?wait=")
    frames: asyncio.Queue[bytes] = asyncio.Queue(QUEUE_FRAMES)

    async def send(frame: bytes) -> None:
        try:
            await asyncio.wait_for(frames.put(frame), settings.send_timeout_s)
        except TimeoutError:
            raise StreamClosed(CloseCode.TOO_SLOW, "too slow: the client is not reading") from None

    stream = new_stream(services, principal, send)

    async def run() -> None:
        closed = await run_joined(services, hub, stream, start)
        services.metrics.streams_closed.labels(str(int(closed.code))).inc()
        await frames.put(closed.error or error_frame("closed", closed.reason))
        await frames.put(_END)

    async def produce() -> AsyncIterator[ServerSentEventMessage]:
        task = asyncio.create_task(run())
        try:
            while (frame := await frames.get()) != _END:
                yield _event(frame)
        finally:
            stream.close(StreamClosed(CloseCode.NORMAL, "client went away"))
            await cancel_and_wait(task)

    return ServerSentEvent(produce(), retry_duration=RETRY_MS, headers={"Cache-Control": "no-store"})


route_handlers = [events]
