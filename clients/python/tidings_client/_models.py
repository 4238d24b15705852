"""Value objects of the v1 wire contract, decoded from JSON.

Decoding is tolerant of keys it does not know (a newer server may add some)
and strict about the ones it needs: a missing or mistyped required key raises
`ProtocolError`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar

from ._errors import ProtocolError

__all__ = [
    "ConnectionState",
    "NamePage",
    "Notification",
    "NotificationStatus",
    "Page",
    "Priority",
    "SendResult",
    "StateAction",
    "StateChange",
    "StateFrame",
    "UnreadCount",
]

Priority = Literal["normal", "high"]
"""Delivery priority of a notification."""

StateAction = Literal["read", "unread", "archive", "unarchive"]
"""A read-state change of inbox entries."""

_T = TypeVar("_T")


def _require(obj: Mapping[str, Any], key: str, kind: type[_T], what: str) -> _T:
    value = obj.get(key)
    # bool is an int subclass; a JSON true is never a valid seq or count.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(f"{what}: {key!r} must be {kind.__name__}, got {value!r}")
    return value


def _optional(obj: Mapping[str, Any], key: str, kind: type[_T], what: str) -> _T | None:
    if obj.get(key) is None:
        return None
    return _require(obj, key, kind, what)


def _time(obj: Mapping[str, Any], key: str, what: str) -> datetime:
    text = _require(obj, key, str, what)
    try:
        return datetime.fromisoformat(text)
    except ValueError as exc:
        raise ProtocolError(f"{what}: {key!r} is not ISO-8601: {text!r}") from exc


def _optional_time(obj: Mapping[str, Any], key: str, what: str) -> datetime | None:
    if obj.get(key) is None:
        return None
    return _time(obj, key, what)


def _strings(obj: Mapping[str, Any], key: str, what: str) -> list[str]:
    values = _require(obj, key, list, what)
    if not all(isinstance(value, str) for value in values):
        raise ProtocolError(f"{what}: {key!r} must be a list of str, got {values!r}")
    return list(values)


def _mapping(obj: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(obj, Mapping):
        raise ProtocolError(f"{what} must be a JSON object, got {obj!r}")
    return obj


@dataclass(frozen=True, slots=True)
class Notification:
    """One notification in one user's inbox (an inbox *entry*).

    Attributes:
        id: The notification id (shared by every recipient's entry).
        seq: Position in this inbox; increases by one per entry, restarts at 1
            when the inbox's epoch changes.
        cursor: Opaque position to resume after this entry; never parse it.
        type: Producer-defined kind, e.g. ``"comment.created"``.
        title: Short headline.
        body: Longer text, or ``None``.
        data: Producer-defined JSON object.
        priority: ``"normal"`` or ``"high"``.
        created_at: When the producer sent it.
        expires_at: When it stops being relevant, or ``None``.
        read_at: When the user read it, or ``None``.
        archived_at: When the user archived it, or ``None``.
    """

    id: str
    seq: int
    cursor: str
    type: str
    title: str
    body: str | None
    data: dict[str, Any]
    priority: str
    created_at: datetime
    expires_at: datetime | None = None
    read_at: datetime | None = None
    archived_at: datetime | None = None

    @classmethod
    def from_json(cls, obj: Any) -> Notification:
        """Decode an entry from its JSON object.

        Args:
            obj: The decoded JSON value of one entry.

        Returns:
            The entry.

        Raises:
            ProtocolError: If a required key is missing or has the wrong type.
        """
        what = "notification entry"
        entry = _mapping(obj, what)
        data = entry.get("data")
        if data is None:
            data = {}
        elif not isinstance(data, dict):
            raise ProtocolError(f"{what}: 'data' must be an object, got {data!r}")
        return cls(
            id=_require(entry, "id", str, what),
            seq=_require(entry, "seq", int, what),
            cursor=_require(entry, "cursor", str, what),
            type=_require(entry, "type", str, what),
            title=_require(entry, "title", str, what),
            body=_optional(entry, "body", str, what),
            data=data,
            priority=_optional(entry, "priority", str, what) or "normal",
            created_at=_time(entry, "created_at", what),
            expires_at=_optional_time(entry, "expires_at", what),
            read_at=_optional_time(entry, "read_at", what),
            archived_at=_optional_time(entry, "archived_at", what),
        )


@dataclass(frozen=True, slots=True)
class SendResult:
    """The answer to `TidingsClient.send`.

    Attributes:
        id: The notification id; pass it to `TidingsClient.get` or `TidingsClient.cancel`.
        status: ``"accepted"`` (stored durably; fan-out follows), or ``"scheduled"``
            (stored durably; fan-out starts at ``send_at``).
        degraded: ``True`` when the service could not queue it and fans it out
            on a slower path; it is stored all the same.
    """

    id: str
    status: str
    degraded: bool = False

    @classmethod
    def from_json(cls, obj: Any) -> SendResult:
        """Decode the 202 answer of ``POST /v1/notifications``.

        Args:
            obj: The decoded JSON body.

        Returns:
            The result.

        Raises:
            ProtocolError: If a required key is missing or has the wrong type.
        """
        what = "send result"
        body = _mapping(obj, what)
        return cls(
            id=_require(body, "id", str, what),
            status=_require(body, "status", str, what),
            degraded=bool(_optional(body, "degraded", bool, what)),
        )


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The result of one item of `TidingsClient.send_batch`.

    Attributes:
        index: The item's position in the request.
        id: The notification id, or ``None`` when the item was refused.
        status: ``"accepted"`` or ``"scheduled"``, or ``None`` when refused.
        replayed: ``True`` when its ``idempotency_key`` was seen before (same id as then).
        degraded: As in `SendResult`.
        error_code: Why it was refused (e.g. ``"invalid_request"``), else ``None``.
        error_detail: A human explanation of the refusal.
        error_field: Which input was wrong, e.g. ``"notifications[3].title"``.
    """

    index: int
    id: str | None = None
    status: str | None = None
    replayed: bool = False
    degraded: bool = False
    error_code: str | None = None
    error_detail: str | None = None
    error_field: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the item was accepted."""
        return self.error_code is None

    @classmethod
    def from_json(cls, obj: Any) -> BatchResult:
        """Decode one element of the ``results`` of ``POST /v1/notifications/batch``.

        Raises:
            ProtocolError: If a key is missing or has the wrong type.
        """
        what = "batch result"
        body = _mapping(obj, what)
        error = body.get("error")
        error_body = _mapping(error, what) if error is not None else {}
        return cls(
            index=_require(body, "index", int, what),
            id=_optional(body, "id", str, what),
            status=_optional(body, "status", str, what),
            replayed=bool(_optional(body, "replayed", bool, what)),
            degraded=bool(_optional(body, "degraded", bool, what)),
            error_code=_optional(error_body, "code", str, what),
            error_detail=_optional(error_body, "detail", str, what),
            error_field=_optional(error_body, "field", str, what),
        )


@dataclass(frozen=True, slots=True)
class NotificationStatus:
    """Delivery status of one notification, from `TidingsClient.get`.

    Attributes:
        id: The notification id.
        status: ``"accepted"``, ``"scheduled"``, ``"delivered"``, ``"cancelled"``
            or ``"failed"``.
        recipients: Number of recipients resolved so far.
        delivered: Number of inbox entries stored so far.
        reason: Why it failed or was cancelled, else ``None``.
        created_at: When it was accepted.
        topic: The topic it was sent to, or ``None`` when sent to users. Its
            subscribers are resolved (and counted in ``recipients``) when
            delivery starts.
        send_at: When delivery is (or was) due, for a scheduled notification,
            else ``None``.
    """

    id: str
    status: str
    recipients: int
    delivered: int
    reason: str | None
    created_at: datetime
    topic: str | None = None
    send_at: datetime | None = None

    @classmethod
    def from_json(cls, obj: Any) -> NotificationStatus:
        """Decode the answer of ``GET`` (or ``DELETE``) ``/v1/notifications/{id}``.

        Args:
            obj: The decoded JSON body.

        Returns:
            The status.

        Raises:
            ProtocolError: If a required key is missing or has the wrong type.
        """
        what = "notification status"
        body = _mapping(obj, what)
        return cls(
            id=_require(body, "id", str, what),
            status=_require(body, "status", str, what),
            recipients=_require(body, "recipients", int, what),
            delivered=_require(body, "delivered", int, what),
            reason=_optional(body, "reason", str, what),
            created_at=_time(body, "created_at", what),
            topic=_optional(body, "topic", str, what),
            send_at=_optional_time(body, "send_at", what),
        )


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a user's inbox, in seq order.

    Attributes:
        items: The entries of this page.
        next_cursor: Pass as ``after`` to read the next page; an empty page
            returns the cursor it was given (the head when none).
        has_more: ``True`` when more entries follow right away.
        truncated: ``True`` when entries after the given cursor were already
            removed by retention, so this page does not continue it gaplessly.
    """

    items: list[Notification] = field(default_factory=list)
    next_cursor: str = ""
    has_more: bool = False
    truncated: bool = False

    @classmethod
    def from_json(cls, obj: Any) -> Page:
        """Decode the answer of ``GET /v1/me/notifications``.

        Args:
            obj: The decoded JSON body.

        Returns:
            The page.

        Raises:
            ProtocolError: If a required key is missing or has the wrong type.
        """
        what = "inbox page"
        body = _mapping(obj, what)
        items = _require(body, "items", list, what)
        return cls(
            items=[Notification.from_json(item) for item in items],
            next_cursor=_require(body, "next_cursor", str, what),
            has_more=bool(_optional(body, "has_more", bool, what)),
            truncated=bool(_optional(body, "truncated", bool, what)),
        )


@dataclass(frozen=True, slots=True)
class NamePage:
    """One page of names in ascending order: a topic's subscribers or a user's topics.

    Attributes:
        items: User ids (or topic names) of this page.
        has_more: ``True`` when more names follow.
        next_after: Pass as ``after`` for the next page; ``None`` on the last one.
    """

    items: list[str] = field(default_factory=list)
    has_more: bool = False
    next_after: str | None = None

    @classmethod
    def from_json(cls, obj: Any) -> NamePage:
        """Decode the answer of ``GET /v1/topics/{topic}/subscribers`` or ``GET /v1/users/{id}/topics``.

        Args:
            obj: The decoded JSON body.

        Returns:
            The page.

        Raises:
            ProtocolError: If a required key is missing or has the wrong type.
        """
        what = "name page"
        body = _mapping(obj, what)
        return cls(
            items=_strings(body, "items", what),
            has_more=bool(_optional(body, "has_more", bool, what)),
            next_after=_optional(body, "next_after", str, what),
        )


@dataclass(frozen=True, slots=True)
class StateChange:
    """The answer to a read-state change (`UserClient.mark_read` and its siblings).

    Attributes:
        updated: How many entries changed state (those already in it are not counted).
        unread: The inbox's unread count right after the change.
        cursor: The inbox head the count is as of.
    """

    updated: int
    unread: int
    cursor: str

    @classmethod
    def from_json(cls, obj: Any) -> StateChange:
        """Decode the answer of ``POST /v1/me/notifications/{action}``.

        Args:
            obj: The decoded JSON body.

        Returns:
            The outcome.

        Raises:
            ProtocolError: If a required key is missing or has the wrong type.
        """
        what = "state change"
        body = _mapping(obj, what)
        return cls(
            updated=_require(body, "updated", int, what),
            unread=_require(body, "unread", int, what),
            cursor=_require(body, "cursor", str, what),
        )


@dataclass(frozen=True, slots=True)
class UnreadCount:
    """The answer of ``GET /v1/me/unread-count`` (`UserClient.unread_and_head`).

    Attributes:
        unread: How many entries are neither read, archived nor expired.
        cursor: The inbox head the count is taken to (read together with it):
            polling with ``after=cursor`` gets exactly the entries after the count.
    """

    unread: int
    cursor: str

    @classmethod
    def from_json(cls, obj: Any) -> UnreadCount:
        """Decode the answer of ``GET /v1/me/unread-count``.

        Args:
            obj: The decoded JSON body.

        Returns:
            The count and its head.

        Raises:
            ProtocolError: If a required key is missing or has the wrong type.
        """
        what = "unread count"
        body = _mapping(obj, what)
        return cls(unread=_require(body, "unread", int, what), cursor=_require(body, "cursor", str, what))


@dataclass(frozen=True, slots=True)
class StateFrame:
    """A ``{"type": "state", ...}`` stream frame: entries of the inbox changed read state.

    The server sends one to every connected device of the user after each
    change, whichever device (or HTTP call) made it. `Subscriber` hands it to
    ``on_state``.

    Attributes:
        action: ``"read"``, ``"unread"``, ``"archive"`` or ``"unarchive"`` (kept
            as a str: a newer server may add actions).
        ids: The notification ids the change named, or ``None`` when it named
            a cursor (``up_to``).
        up_to: Every entry up to and including this cursor changed, or ``None``
            when the change named ``ids``.
        at: When the change was made (the entries' new ``read_at`` /
            ``archived_at``), or ``None`` (e.g. for ``unread``).
        unread: The inbox's unread count right after the change.
        cursor: The inbox head the count is as of.
        seq: The seq of that head: entries with a higher seq are not in ``unread``
            yet (``None`` from a server that does not send it).
    """

    action: str
    unread: int
    cursor: str
    ids: list[str] | None = None
    up_to: str | None = None
    at: datetime | None = None
    seq: int | None = None

    @classmethod
    def from_json(cls, obj: Any) -> StateFrame:
        """Decode a ``state`` frame.

        Args:
            obj: The decoded JSON frame.

        Returns:
            The frame.

        Raises:
            ProtocolError: If a required key is missing or has the wrong type.
        """
        what = "state frame"
        frame = _mapping(obj, what)
        return cls(
            action=_require(frame, "action", str, what),
            unread=_require(frame, "unread", int, what),
            cursor=_require(frame, "cursor", str, what),
            ids=_strings(frame, "ids", what) if frame.get("ids") is not None else None,
            up_to=_optional(frame, "up_to", str, what),
            at=_optional_time(frame, "at", what),
            seq=_optional(frame, "seq", int, what),
        )


class ConnectionState(enum.StrEnum):
    """Life cycle of a `Subscriber`'s connection, reported to ``on_connection_state``.

    Attributes:
        CONNECTING: Opening a WebSocket (first time or after a drop).
        CONNECTED: The socket is open and the auth frame was sent.
        LIVE: The server sent ``ready``: the replay is over, entries now arrive live.
        DISCONNECTED: The connection was lost; a reconnect is scheduled.
        DEGRADED: The WebSocket is blocked or keeps dropping: entries arrive by
            long-poll (``GET /v1/me/notifications?wait=``), and the WebSocket is
            tried again now and then (`LIVE` when it works again).
        OFFLINE: Degraded, and polling does not reach the server right now
            either; the subscriber retries with backoff (`DEGRADED` when a poll
            answers again).
        CLOSED: The subscriber stopped, by `Subscriber.close` or a terminal error.
    """

    CONNECTING = "connecting"
    CONNECTED = "connected"
    LIVE = "live"
    DISCONNECTED = "disconnected"
    DEGRADED = "degraded"
    OFFLINE = "offline"
    CLOSED = "closed"
