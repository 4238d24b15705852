"""Request and response bodies of the v1 HTTP API (they generate openapi/openapi.json)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from service.domain import rules
from service.domain.models import Entry

UserId = Annotated[
    str, Meta(min_length=1, max_length=rules.MAX_USER_ID_LENGTH, pattern=rules.USER_ID_PATTERN, examples=["user-42"])
]


Topic = Annotated[
    str,
    Meta(min_length=1, max_length=rules.MAX_TOPIC_LENGTH, pattern=rules.TOPIC_PATTERN, examples=["project-7"]),
]
NotificationId = Annotated[str, Meta(pattern=rules.NOTIFICATION_ID_PATTERN, examples=["0193a8c2f1e04b6f9d2a7c1e5b3f8a90"])]


class Recipients(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Who receives a notification: ``users`` or ``topic``, exactly one of them."""

    users: (
        Annotated[
            list[UserId],
            Meta(
                min_length=1,
                max_length=rules.MAX_RECIPIENTS,
                description=f"1 to {rules.MAX_RECIPIENTS} user ids; duplicates count once.",
            ),
        ]
        | None
    ) = None
    topic: (
        Annotated[
            str,
            Meta(
                min_length=1,
                max_length=rules.MAX_TOPIC_LENGTH,
                pattern=rules.TOPIC_PATTERN,
                description="A topic: its subscribers when delivery starts (for `send_at`: when due).",
                examples=["project-7"],
            ),
        ]
        | None
    ) = None


class NotificationIn(msgspec.Struct, forbid_unknown_fields=True):
    """A notification to enqueue."""

    recipients: Recipients
    type: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=rules.MAX_TYPE_LENGTH,
            pattern=rules.TYPE_PATTERN,
            description="What kind of notification this is, e.g. `comment.created`.",
            examples=["comment.created"],
        ),
    ]
    title: Annotated[
        str, Meta(min_length=1, max_length=rules.MAX_TITLE_LENGTH, pattern=rules.TEXT_PATTERN, examples=["New comment"])
    ]
    body: Annotated[str, Meta(max_length=rules.MAX_BODY_LENGTH, pattern=rules.TEXT_PATTERN)] | None = None
    data: Annotated[dict[str, Any], Meta(description="Any JSON object, delivered as is.")] = msgspec.field(
        default_factory=dict
    )
    priority: Literal["normal", "high"] = "normal"
    ttl_seconds: (
        Annotated[
            int,
            Meta(
                ge=1,
                le=rules.MAX_TTL_S,
                description="Hide the entries this many seconds after delivery is due (poll, stream and counts).",
            ),
        ]
        | None
    ) = None
    send_at: (
        Annotated[
            datetime,
            Meta(
                tz=True,
                description=(
                    "Deliver at this time (RFC 3339 with an offset), at most a year ahead; `scheduled` until then. "
                    "A time in the past delivers now."
                ),
                examples=["2026-12-24T09:00:00Z"],
            ),
        ]
        | None
    ) = None


class BatchItem(NotificationIn):
    """One item of a batch: a notification, plus its own optional Idempotency-Key."""

    idempotency_key: (
        Annotated[
            str,
            Meta(min_length=1, max_length=rules.MAX_IDEMPOTENCY_KEY_LENGTH, pattern=rules.HEADER_TOKEN_PATTERN),
        ]
        | None
    ) = None

    def notification(self) -> NotificationIn:
        """The item without its key, as ``POST /v1/notifications`` would receive it."""
        return NotificationIn(
            recipients=self.recipients, type=self.type, title=self.title, body=self.body, data=self.data,
            priority=self.priority, ttl_seconds=self.ttl_seconds, send_at=self.send_at,
        )


class BatchIn(msgspec.Struct, forbid_unknown_fields=True):
    """A batch of notifications; each item is validated on its own."""

    notifications: Annotated[
        list[Any],
        Meta(
            min_length=1,
            max_length=rules.MAX_BATCH,
            description=(
                f"1 to {rules.MAX_BATCH} objects, each shaped like the body of POST /v1/notifications "
                "plus an optional `idempotency_key`."
            ),
        ),
    ]


class BatchError(msgspec.Struct):
    """Why one item of a batch was not accepted."""

    code: str
    detail: str
    field: str | None = None


class BatchResult(msgspec.Struct, omit_defaults=True):
    """The result of one batch item: an id and status, or an error."""

    index: int
    id: str | None = None
    status: str | None = None
    replayed: bool = False
    degraded: bool = False
    error: BatchError | None = None


class BatchOut(msgspec.Struct):
    """One result per item, in the order of the request."""

    results: list[BatchResult]


class Accepted(msgspec.Struct, omit_defaults=True):
    """The answer to an enqueue: the notification is stored and will be delivered."""

    id: str
    status: str
    degraded: bool = False
    """True when the queue was unreachable: the service delivers it itself, a little later."""


class NotificationStatus(msgspec.Struct):
    """Where a notification's delivery stands."""

    id: str
    status: Literal["accepted", "scheduled", "delivered", "cancelled", "failed"]
    recipients: int
    """How many distinct users it is addressed to."""
    delivered: int
    """How many inbox entries are stored for it."""
    reason: str | None
    created_at: str
    topic: str | None = None
    """The topic it was sent to (its subscribers are counted once delivery starts)."""
    send_at: str | None = None


class EntryPage(msgspec.Struct):
    """A page of a user's inbox in seq order."""

    items: list[Entry]
    next_cursor: str
    """Pass as ``after`` to get what comes next (the given cursor when the page is empty)."""
    has_more: bool
    truncated: bool
    """Entries between the given cursor and the first item were removed by retention."""


class UnreadCount(msgspec.Struct):
    """The user's unread entries, counted up to ``cursor`` (the inbox head when it was read)."""

    unread: int
    cursor: str
    """The head: poll with ``after=cursor`` to get only what comes next (as after ``ready``)."""


class StateChangeIn(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """Which entries to change: by notification ``ids``, or every entry up to a cursor; one of the two."""

    ids: (
        Annotated[
            list[NotificationId],
            Meta(min_length=1, max_length=rules.MAX_STATE_IDS, description="Notification ids (an entry's `id`)."),
        ]
        | None
    ) = None
    up_to: Annotated[str, Meta(description="A cursor: every entry up to and including it.")] | None = None


class StateChangeOut(msgspec.Struct):
    """The outcome of a read-state change (the same is pushed to the user's devices)."""

    updated: int
    """Entries whose state changed (those already in it are left as they were)."""
    unread: int
    """The unread count right after the change."""
    cursor: str
    """The inbox head the count is as of."""


class SubscribersIn(msgspec.Struct, forbid_unknown_fields=True):
    """Users to subscribe to a topic."""

    users: Annotated[
        list[UserId],
        Meta(min_length=1, max_length=rules.MAX_SUBSCRIBE_BATCH, description=f"1 to {rules.MAX_SUBSCRIBE_BATCH} user ids."),
    ]


class SubscribersAdded(msgspec.Struct):
    """How many of the users were not subscribed before."""

    added: int


class NamePage(msgspec.Struct):
    """A page of names (user ids or topics) in ascending order."""

    items: list[str]
    has_more: bool
    next_after: str | None
    """Pass as ``after`` for the next page (``null`` on the last one)."""


class Problem(msgspec.Struct, omit_defaults=True):
    """An RFC 9457 problem document; ``code`` is stable, ``detail`` is for humans."""

    type: str
    title: str
    status: int
    code: str
    detail: str
    field: str | None = None
