"""Python SDK for Tidings, a self-hosted notification delivery service.

Producers send (to users or topics, now or at ``send_at``), cancel, and manage
topic subscriptions with `TidingsClient` / `AsyncTidingsClient`; a user's
device reads its inbox and changes read state with `UserClient` /
`AsyncUserClient` and follows it live with `Subscriber`.
"""

from ._backoff import (
    Backoff,
)
from ._client import (
    AsyncTidingsClient,
    AsyncUserClient,
    TidingsClient,
    UserClient,
    batch_item,
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
    NamePage,
    Notification,
    NotificationStatus,
    Page,
    Priority,
    SendResult,
    StateAction,
    StateChange,
    StateFrame,
    UnreadCount,
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
    "NamePage",
    "NotFoundError",
    "Notification",
    "NotificationStatus",
    "Page",
    "PayloadTooLargeError",
    "Priority",
    "ProtocolError",
    "RateLimitedError",
    "SendResult",
    "StateAction",
    "StateChange",
    "StateFrame",
    "Subscriber",
    "TidingsClient",
    "TidingsError",
    "TokenSource",
    "TransportError",
    "UnavailableError",
    "UnreadCount",
    "UserClient",
    "batch_item",
]
