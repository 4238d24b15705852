"""Wire codes with their client semantics: HTTP error codes and WebSocket close codes."""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ErrorCode(StrEnum):
    """The stable ``code`` of every error document and ``error`` frame."""

    INVALID_REQUEST = "invalid_request"
    """400: malformed or invalid input; ``field`` names the culprit. Terminal: fix the request."""
    INVALID_CURSOR = "invalid_cursor"
    """400: the cursor is not one this service issued. Restart from the head."""
    UNAUTHORIZED = "unauthorized"
    """401: credentials missing, malformed, expired or wrong."""
    FORBIDDEN = "forbidden"
    """403: authenticated but not allowed."""
    NOT_FOUND = "not_found"
    """404: no such resource (or not yours)."""
    METHOD_NOT_ALLOWED = "method_not_allowed"
    """405: the path exists but not with this method."""
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    """409: the Idempotency-Key was used with a different body."""
    NOT_CANCELLABLE = "not_cancellable"
    """409: the notification's delivery has already started (or ended); it cannot be cancelled."""
    CURSOR_RESET = "cursor_reset"
    """410: the inbox was erased since the cursor was issued; restart from the head."""
    PAYLOAD_TOO_LARGE = "payload_too_large"
    """413: the body is larger than the service accepts."""
    RATE_LIMITED = "rate_limited"
    """429: slow down; retry after ``Retry-After``."""
    UNAVAILABLE = "unavailable"
    """503: a dependency is down; retry after ``Retry-After``. Nothing accepted is lost."""
    INTERNAL = "internal"
    """500: a bug. Never caused by input; reported so it can be fixed."""


class CloseCode(IntEnum):
    """WebSocket close codes and what a client does on each."""

    NORMAL = 1000
    """Closed on purpose; reconnect only if the app still wants the stream."""
    POLICY = 1008
    """Auth missing or bad: terminal until the app has a valid token."""
    TOO_BIG = 1009
    """A client frame was too large: terminal, fix the client."""
    SERVICE_RESTART = 1012
    """The instance is draining: reconnect after a short random delay, resume from the cursor."""
    TOKEN_EXPIRED = 4001
    """The token expired: reconnect with a fresh one, resume from the cursor."""
    TOO_SLOW = 4008
    """The socket did not drain: reconnect and resume from the cursor."""
    CURSOR_RESET = 4009
    """The inbox epoch changed: restart from the head and reset the last seen seq."""
