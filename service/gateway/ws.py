"""``GET /v1/stream``: the WebSocket shell around :class:`~service.gateway.stream.Stream`.

This module only moves frames: it authenticates (first frame, or ``?token=``),
joins the hub, runs the stream, reads client frames in a second task, and
closes with the stream's code.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import msgspec
from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect

from service.auth.tokens import Principal, verify_user_token
from service.domain import rules
from service.domain.codes import CloseCode, ErrorCode
from service.domain.cursor import Cursor, InvalidCursorError
from service.domain.frames import error_frame
from service.errors import InvalidRequest, TidingsError, Unauthorized
from service.gateway.session import new_stream, run_joined
from service.gateway.stream import Stream, StreamClosed
from service.lifespan import Services
from service.read_state import change_state

log = logging.getLogger("tidings.gateway")



class _ClientFrame(msgspec.Struct):
    type: str
    token: str | None = None
    cursor: str | None = None
    ids: list[str] | None = None
    up_to: str | None = None


_decode_frame = msgspec.json.Decoder(_ClientFrame).decode


CLOSE_TIMEOUT_S = 2.0


async def _close(socket: WebSocket[Any, Any, Any], closed: StreamClosed) -> None:
    async def send_close() -> None:
        if closed.error is not None:
            await socket.send_text(closed.error.decode())
        await socket.close(code=closed.code, reason=closed.reason[:120])

    try:
        # Bounded: a socket that does not drain cannot take the close frame either.
        await asyncio.wait_for(send_close(), CLOSE_TIMEOUT_S)
    except (WebSocketDisconnect, RuntimeError, OSError, TimeoutError):
        pass


def _policy(code: ErrorCode, message: str, close: int = CloseCode.POLICY) -> StreamClosed:
    return StreamClosed(close, message, error_frame(code, message))


async def _authenticate(
    socket: WebSocket[Any, Any, Any], services: Services
) -> tuple[Principal, Cursor | None]:
    settings = services.settings
    token = socket.query_params.get("token")
    cursor_text = socket.query_params.get("cursor")
    if token is None:
        try:
            raw = await asyncio.wait_for(socket.receive_text(), settings.auth_timeout_s)
        except TimeoutError:
            raise _policy(ErrorCode.UNAUTHORIZED, "no auth frame within the time allowed") from None
        try:
            frame = _decode_frame(raw)
        except msgspec.DecodeError:
            raise _policy(ErrorCode.UNAUTHORIZED, 'the first frame must be {"type":"auth","token":...}') from None
        if frame.type != "auth" or not frame.token:
            raise _policy(ErrorCode.UNAUTHORIZED, 'the first frame must be {"type":"auth","token":...}')
        token, cursor_text = frame.token, frame.cursor
    try:
        principal = verify_user_token(token, settings.jwt_secret, settings.app_id)
    except Unauthorized as exc:
        raise _policy(ErrorCode.UNAUTHORIZED, exc.detail) from None
    cursor = None
    if cursor_text:
        try:
            cursor = Cursor.decode(cursor_text)
        except InvalidCursorError as exc:
            # Restarting from the head is the client's way out, as after an epoch change.
            raise _policy(ErrorCode.INVALID_CURSOR, f"invalid cursor: {exc}", CloseCode.CURSOR_RESET) from None
    return principal, cursor


async def _read_client_frames(socket: WebSocket[Any, Any, Any], stream: Stream, services: Services) -> None:
    """Handle ``auth`` (token refresh), ``read`` and ``pong``; end the stream when the client leaves."""
    settings = services.settings
    try:
        while True:
            raw = await socket.receive_text()
            try:
                frame = _decode_frame(raw)
            except msgspec.DecodeError:
                continue  # unknown or malformed client frames are ignored, as the protocol allows
            if frame.type == "auth" and frame.token:
                try:
                    principal = verify_user_token(frame.token, settings.jwt_secret, settings.app_id)
                except Unauthorized as exc:
                    stream.close(_policy(ErrorCode.UNAUTHORIZED, exc.detail))
                    return
                if principal.user_id != stream.user_id:
                    stream.close(_policy(ErrorCode.FORBIDDEN, "a refreshed token must be for the same user"))
                    return
                stream.refresh(principal)
            elif frame.type == "read":
                await _mark_read(frame, stream, services)
    except (WebSocketDisconnect, RuntimeError, OSError):
        stream.close(StreamClosed(CloseCode.NORMAL, "client went away"))


async def _mark_read(frame: _ClientFrame, stream: Stream, services: Services) -> None:
    """``{"type":"read","ids":[...]}`` or ``{"type":"read","up_to":cursor}``; the ``state`` frame
    that follows (to every device of the user) is the answer. A bad one is ignored."""
    try:
        up_to = Cursor.decode(frame.up_to) if frame.up_to is not None else None
        ids = frame.ids
        if ids is not None and (
            not 0 < len(ids) <= rules.MAX_STATE_IDS
            or not all(re.fullmatch(rules.NOTIFICATION_ID_PATTERN, item) for item in ids)
        ):
            raise InvalidRequest("ids must be 1 to 500 notification ids", field="ids")
        await change_state(
            services.repository, services.publisher, services.settings.channel_prefix, stream.principal, "read",
            ids=ids, up_to=up_to,
        )
    except (InvalidCursorError, TidingsError) as exc:
        log.info("read frame of %s ignored: %s", stream.user_id, exc)


@websocket("/v1/stream")
async def stream_handler(socket: WebSocket[Any, Any, Any], services: NamedDependency[Services]) -> None:
    """A device's live stream (see the module docstring of ``service.gateway.stream``)."""
    await socket.accept()
    settings = services.settings
    hub = services.hub
    assert hub is not None, "the gateway runs only with role all or gateway"
    try:
        principal, cursor = await _authenticate(socket, services)
    except StreamClosed as closed:
        services.metrics.streams_closed.labels(str(int(closed.code))).inc()
        await _close(socket, closed)
        return
    except WebSocketDisconnect:
        return

    async def send(frame: bytes) -> None:
        try:
            await asyncio.wait_for(socket.send_text(frame.decode()), settings.send_timeout_s)
        except TimeoutError:
            raise StreamClosed(CloseCode.TOO_SLOW, "too slow: the socket is not draining") from None

    stream = new_stream(services, principal, send)
    reader = asyncio.create_task(_read_client_frames(socket, stream, services))
    try:
        closed = await run_joined(services, hub, stream, cursor)
    except (WebSocketDisconnect, RuntimeError, OSError):
        closed = StreamClosed(CloseCode.NORMAL, "client went away")
    finally:
        reader.cancel()
    services.metrics.streams_closed.labels(str(int(closed.code))).inc()
    await _close(socket, closed)


route_handlers = [stream_handler]
