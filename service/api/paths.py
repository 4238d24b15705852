"""Refuse request paths that mean two things.

The server decodes ``%2F`` into ``/`` and the router collapses empty segments,
so ``/v1/topics/a%2F/subscribers/x`` would reach topic ``a``. No Tidings path
segment may hold a slash or be empty, so such a path is refused up front:
``400 invalid_request`` (``field: "path"``) over HTTP, close 1008 on a WebSocket.
"""

from __future__ import annotations

import json

from litestar.types import ASGIApp, Receive, Scope, Send

from service.api.problems import PROBLEM_JSON
from service.domain.codes import CloseCode, ErrorCode


def _ambiguous(scope: Scope) -> bool:
    raw = scope.get("raw_path") or scope["path"].encode()
    path = raw.split(b"?", 1)[0]
    return b"%2f" in path.lower() or b"//" in path or b"%5c" in path.lower()


_BODY = json.dumps(
    {
        "type": f"https://tidings.dev/errors/{ErrorCode.INVALID_REQUEST}",
        "title": "Invalid request",
        "status": 400,
        "code": ErrorCode.INVALID_REQUEST,
        "detail": "a path segment is empty or holds an encoded slash",
        "field": "path",
    }
).encode()


def reject_ambiguous_paths(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: answer ambiguous paths before routing."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _ambiguous(scope):
            await send(
                {
                    "type": "http.response.start",
                    "status": 400,
                    "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(_BODY)).encode())],
                }
            )
            await send({"type": "http.response.body", "body": _BODY})
            return
        if scope["type"] == "websocket" and _ambiguous(scope):
            await send({"type": "websocket.close", "code": int(CloseCode.POLICY), "reason": "ambiguous path"})
            return
        await app(scope, receive, send)

    return middleware
