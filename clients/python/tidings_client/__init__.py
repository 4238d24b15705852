"""Python SDK for Tidings, a self-hosted notification delivery service.

Producers send with `TidingsClient` / `AsyncTidingsClient`; a user's device
reads its inbox with `UserClient` / `AsyncUserClient` and follows it live with
`Subscriber`.
"""

from ._backoff import (
    Backoff,
)
from ._client import (
    AsyncTidingsClient,
    AsyncUserClient,
    TidingsClient,
    UserClient,
)
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    CursorResetError,
    ForbiddenError,
    NotFoundError,
    PayloadTooLargeError,
    ProtocolError,
    RateLimitedError,
    TidingsError,
    TransportError,
    UnavailableError,
)
from ._models import (
    BatchResult,
    ConnectionState,
    Notification,
    NotificationStatus,
    Page,
    Priority,
    SendResult,
)
from ._stream import (
    Subscriber,
    TokenSource,
)

__version__ = "0.1.0"

__all__ = [
    "APIError",
    "AsyncTidingsClient",
    "AsyncUserClient",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "BatchResult",
    "ConflictError",
    "ConnectionState",
    "CursorResetError",
    "ForbiddenError",
    "NotFoundError",
    "Notification",
    "NotificationStatus",
    "Page",
    "PayloadTooLargeError",
    "Priority",
    "ProtocolError",
    "RateLimitedError",
    "SendResult",
    "Subscriber",
    "TidingsClient",
    "TidingsError",
    "TokenSource",
    "TransportError",
    "UnavailableError",
    "UserClient",
]
