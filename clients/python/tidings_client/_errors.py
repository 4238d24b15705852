"""Exceptions raised by the Tidings SDK.

Every exception the SDK raises on purpose derives from `TidingsError`::

    TidingsError
    ├── APIError                 the server answered with a problem document
    │   ├── BadRequestError          400 invalid_request, invalid_cursor
    │   ├── AuthenticationError      401; stream close 1008, or 4001 with no token refresh
    │   ├── ForbiddenError           403
    │   ├── NotFoundError            404
    │   ├── ConflictError            409 idempotency_conflict, not_cancellable
    │   ├── CursorResetError         410 cursor_reset: restart from the head
    │   ├── PayloadTooLargeError     413
    │   ├── RateLimitedError         429 (retry_after)
    │   └── UnavailableError         502, 503, 504 (retry_after)
    ├── ProtocolError            the server broke the v1 wire contract
    └── TransportError           the request did not complete (wraps httpx.HTTPError)

`APIError` subclasses are chosen by HTTP status, so an unknown `code` from a
newer server still lands in the right branch.
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "CursorResetError",
    "ForbiddenError",
    "NotFoundError",
    "PayloadTooLargeError",
    "ProtocolError",
    "RateLimitedError",
    "TidingsError",
    "TransportError",
    "UnavailableError",
]


class TidingsError(Exception):
    """Base class of every exception raised by the SDK."""


class APIError(TidingsError):
    """The server answered with a non-2xx status and an RFC 9457 problem document.

    Attributes:
        status: The HTTP status (401 for authentication failures on the stream).
        code: The stable machine-readable error code, e.g. ``"invalid_request"``.
        detail: The human-readable explanation.
        field: The offending input field for input errors, else ``None``.
        retry_after: Seconds the server asked to wait (``Retry-After``), else ``None``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        field: str | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        """Create the error.

        Args:
            status: HTTP status of the answer.
            code: Stable error code from the problem document.
            detail: Human-readable explanation.
            field: Offending input field, if the server named one.
            retry_after: Delay in seconds from ``Retry-After``, if any.
        """
        super().__init__(status, code, detail, field)
        self.status = status
        self.code = code
        self.detail = detail
        self.field = field
        self.retry_after = retry_after

    def __str__(self) -> str:
        """Return ``"<status> <code>: <detail>"`` plus the field when known."""
        text = f"{self.status} {self.code}: {self.detail}"
        if self.field:
            text += f" (field: {self.field})"
        return text


class BadRequestError(APIError):
    """The request was malformed or invalid (400), including a bad cursor."""


class AuthenticationError(APIError):
    """The API key or user token is missing, invalid or expired.

    Raised for HTTP 401, and by `Subscriber` when the stream closes with 1008
    (policy) or 4001 (token expired) and no token provider can give a fresh token.

    Attributes:
        close_code: The WebSocket close code when raised by the stream, else ``None``.
    """

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        field: str | None = None,
        *,
        retry_after: float | None = None,
        close_code: int | None = None,
    ) -> None:
        """Create the error.

        Args:
            status: HTTP status (401 for the stream).
            code: Stable error code.
            detail: Human-readable explanation.
            field: Offending input field, if any.
            retry_after: Delay in seconds from ``Retry-After``, if any.
            close_code: WebSocket close code, when raised by the stream.
        """
        super().__init__(status, code, detail, field, retry_after=retry_after)
        self.close_code = close_code


class ForbiddenError(APIError):
    """The credentials are valid but not allowed to do this (403)."""


class NotFoundError(APIError):
    """The resource does not exist, or not for these credentials (404)."""


class ConflictError(APIError):
    """The request conflicts with the resource's state (409).

    ``code`` says which: ``"idempotency_conflict"`` (the ``Idempotency-Key`` was
    already used with a different request) or ``"not_cancellable"``
    (`TidingsClient.cancel` came after the notification's delivery started).
    """


class CursorResetError(APIError):
    """The inbox's epoch changed (410): drop the cursor and restart from the head."""


class PayloadTooLargeError(APIError):
    """The request body is larger than the server accepts (413)."""


class RateLimitedError(APIError):
    """Too many requests (429); wait `retry_after` seconds when it is set."""


class UnavailableError(APIError):
    """The service cannot answer right now (503); retry after `retry_after` seconds."""


class ProtocolError(TidingsError):
    """The server sent something that does not follow the v1 wire contract."""


class TransportError(TidingsError):
    """The HTTP request failed before an answer arrived (connect, timeout, ...).

    The original `httpx.HTTPError` is kept as ``__cause__``.
    """
