"""The service's errors; each one knows its HTTP status and stable code.

    TidingsError
     ├── InvalidRequest        400 invalid_request   (``field`` names the input)
     ├── InvalidCursor         400 invalid_cursor
     ├── Unauthorized          401 unauthorized
     ├── Forbidden             403 forbidden
     ├── NotFound              404 not_found
     ├── IdempotencyConflict   409 idempotency_conflict
     ├── CursorReset           410 cursor_reset
     ├── PayloadTooLarge       413 payload_too_large
     └── Unavailable           503 unavailable
          ├── StoreUnavailable     the database did not answer
          └── BrokerUnavailable    Redis did not answer

Foreign exceptions (SQLAlchemy, redis-py) are translated into these at the
store and broker boundaries; the HTTP layer renders them in one handler.
"""

from __future__ import annotations

from service.domain.codes import ErrorCode


class TidingsError(Exception):
    """Base of every error the service reports to a client."""

    status: int = 500
    code: ErrorCode = ErrorCode.INTERNAL
    title: str = "Internal error"

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class InvalidRequest(TidingsError):
    """Malformed or invalid input."""

    status = 400
    code = ErrorCode.INVALID_REQUEST
    title = "Invalid request"


class InvalidCursor(TidingsError):
    """A cursor this service did not issue."""

    status = 400
    code = ErrorCode.INVALID_CURSOR
    title = "Invalid cursor"


class Unauthorized(TidingsError):
    """Missing, malformed, expired or wrong credentials."""

    status = 401
    code = ErrorCode.UNAUTHORIZED
    title = "Unauthorized"


class Forbidden(TidingsError):
    """Authenticated but not allowed."""

    status = 403
    code = ErrorCode.FORBIDDEN
    title = "Forbidden"


class NotFound(TidingsError):
    """No such resource."""

    status = 404
    code = ErrorCode.NOT_FOUND
    title = "Not found"


class IdempotencyConflict(TidingsError):
    """An Idempotency-Key reused with a different request."""

    status = 409
    code = ErrorCode.IDEMPOTENCY_CONFLICT
    title = "Idempotency conflict"


class NotCancellable(TidingsError):
    """The notification's delivery started or ended before the cancel."""

    status = 409
    code = ErrorCode.NOT_CANCELLABLE
    title = "Not cancellable"


class CursorReset(TidingsError):
    """The inbox was erased since the cursor was issued."""

    status = 410
    code = ErrorCode.CURSOR_RESET
    title = "Cursor reset"


class PayloadTooLarge(TidingsError):
    """The request body is too large."""

    status = 413
    code = ErrorCode.PAYLOAD_TOO_LARGE
    title = "Payload too large"


class Unavailable(TidingsError):
    """A dependency is down; the client should retry later."""

    status = 503
    code = ErrorCode.UNAVAILABLE
    title = "Service unavailable"
    retry_after_s = 2


class StoreUnavailable(Unavailable):
    """The database did not answer."""


class BrokerUnavailable(Unavailable):
    """Redis did not answer."""
