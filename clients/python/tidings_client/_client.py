"""HTTP clients: the producer API (`TidingsClient`) and the user API (`UserClient`).

Each comes in a sync and an async flavour over the same request building and
answer decoding; only the I/O differs. `httpx` errors are translated into
`TransportError` in one place (`_SyncHTTP._request` / `_AsyncHTTP._request`),
problem documents into `APIError` subclasses in `_raise_for_problem`.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

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
    TransportError,
    UnavailableError,
)
from ._models import (
    BatchResult,
    NamePage,
    NotificationStatus,
    Page,
    Priority,
    SendResult,
    StateAction,
    StateChange,
    UnreadCount,
)

__all__ = ["AsyncTidingsClient", "AsyncUserClient", "TidingsClient", "UserClient", "batch_item"]

USER_AGENT = "tidings-client-python/0.1.0"

_ERROR_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: CursorResetError,
    413: PayloadTooLargeError,
    429: RateLimitedError,
    502: UnavailableError,
    503: UnavailableError,
    504: UnavailableError,
}


# --- pure helpers: request building and answer decoding ------------------------


def _auth_headers(credential: str) -> dict[str, str]:
    if not isinstance(credential, str) or not credential:
        raise TypeError("the API key / token must be a non-empty str")
    return {"Authorization": f"Bearer {credential}", "User-Agent": USER_AGENT}


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date)."""
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _raise_for_problem(response: httpx.Response) -> None:
    """Raise the `APIError` subclass matching a non-2xx answer; do nothing on 2xx."""
    if response.is_success:
        return
    status = response.status_code
    code = f"http_{status}"
    detail = response.reason_phrase or "request failed"
    field: str | None = None
    try:
        problem = response.json()
    except ValueError:
        # Not a problem document (e.g. a proxy's HTML page): keep status and reason.
        problem = None
    if isinstance(problem, dict):
        if isinstance(problem.get("code"), str):
            code = problem["code"]
        if isinstance(problem.get("detail"), str):
            detail = problem["detail"]
        elif isinstance(problem.get("title"), str):
            detail = problem["title"]
        if isinstance(problem.get("field"), str):
            field = problem["field"]
    error_class = _ERROR_BY_STATUS.get(status, APIError)
    raise error_class(status, code, detail, field, retry_after=_retry_after(response))


def _json_body(response: httpx.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError as exc:
        raise ProtocolError(f"{what}: the answer is not JSON") from exc


def _rfc3339(value: datetime, name: str) -> str:
    """An aware datetime as RFC 3339; a naive one is refused (the server would guess its zone)."""
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. datetime.now(UTC)), got {value!r}")
    return value.isoformat()


def _user_ids(users: Sequence[str], name: str) -> list[str]:
    # A lone str is a Sequence[str] too; sending to "a", "l", "i", "c", "e" is never meant.
    if isinstance(users, str):
        raise TypeError(f"{name} must be a sequence of user ids, not a str")
    return list(users)


def _send_payload(
    users: Sequence[str] | None,
    type: str,  # noqa: A002 - the wire field's name
    title: str,
    body: str | None,
    data: Mapping[str, Any] | None,
    priority: Priority | None,
    *,
    topic: str | None = None,
    ttl_seconds: int | None = None,
    send_at: datetime | None = None,
) -> dict[str, Any]:
    if (users is None) == (topic is None):
        raise ValueError("give users or topic, exactly one of them")
    recipients = {"users": _user_ids(users, "users")} if users is not None else {"topic": topic}
    payload: dict[str, Any] = {
        "recipients": recipients,
        "type": type,
        "title": title,
    }
    if body is not None:
        payload["body"] = body
    if data is not None:
        payload["data"] = dict(data)
    if priority is not None:
        payload["priority"] = priority
    if ttl_seconds is not None:
        payload["ttl_seconds"] = ttl_seconds
    if send_at is not None:
        payload["send_at"] = _rfc3339(send_at, "send_at")
    return payload


def _send_request(
    users: Sequence[str] | None,
    type: str,  # noqa: A002
    title: str,
    body: str | None,
    data: Mapping[str, Any] | None,
    priority: Priority | None,
    idempotency_key: str | None,
    *,
    topic: str | None = None,
    ttl_seconds: int | None = None,
    send_at: datetime | None = None,
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    payload = _send_payload(
        users, type, title, body, data, priority, topic=topic, ttl_seconds=ttl_seconds, send_at=send_at
    )
    return {"content": json.dumps(payload).encode(), "headers": headers}


def batch_item(
    type: str,  # noqa: A002
    title: str,
    *,
    users: Sequence[str] | None = None,
    topic: str | None = None,
    body: str | None = None,
    data: Mapping[str, Any] | None = None,
    priority: Priority | None = None,
    ttl_seconds: int | None = None,
    send_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """Build one item of `TidingsClient.send_batch`, checked like `TidingsClient.send`.

    Example::

        client.send_batch([
            batch_item("order.shipped", "Shipped", users=["alice"], idempotency_key="o-1"),
            batch_item("digest", "Your week", topic="weekly", send_at=monday_9am),
        ])

    Args:
        type: Producer-defined kind, e.g. ``"comment.created"``.
        title: Short headline.
        users: Recipient user ids; give this or ``topic``.
        topic: Send to the topic's subscribers instead (resolved when delivery starts).
        body: Longer text.
        data: JSON object handed to the devices as is.
        priority: ``"normal"`` or ``"high"``.
        ttl_seconds: Hide the entries this many seconds after delivery is due.
        send_at: Deliver at this (timezone-aware) time instead of now.
        idempotency_key: This item's own idempotency key.

    Returns:
        The item, a JSON-ready mapping.

    Raises:
        TypeError: If ``users`` is a str, or ``send_at`` is not a datetime.
        ValueError: If not exactly one of ``users`` and ``topic`` is given, or
            ``send_at`` is naive.
    """
    item = _send_payload(
        users, type, title, body, data, priority, topic=topic, ttl_seconds=ttl_seconds, send_at=send_at
    )
    if idempotency_key is not None:
        item["idempotency_key"] = idempotency_key
    return item


def _batch_payload(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    notifications: list[dict[str, Any]] = []
    for item in items:
        body = dict(item)
        # A hand-built item may hold a datetime: encode it as send() does, refusing a naive one.
        if isinstance(body.get("send_at"), datetime):
            body["send_at"] = _rfc3339(body["send_at"], "send_at")
        notifications.append(body)
    return {"notifications": notifications}


def _batch_results(obj: Any) -> list[BatchResult]:
    results = obj.get("results") if isinstance(obj, dict) else None
    if not isinstance(results, list):
        raise ProtocolError(f"batch answer must hold a results list, got {obj!r}")
    return [BatchResult.from_json(result) for result in results]


def _status_path(notification_id: str) -> str:
    return "/v1/notifications/" + _segment(notification_id)


def _segment(value: str) -> str:
    """One path segment, percent-encoded; ``.`` and ``..`` too, or the URL would drop them."""
    if value and value.strip(".") == "":
        return "%2E" * len(value)
    return quote(value, safe="")


def _subscribers_path(topic: str, user_id: str | None = None) -> str:
    path = f"/v1/topics/{_segment(topic)}/subscribers"
    return path if user_id is None else f"{path}/{_segment(user_id)}"


def _topics_path(user_id: str) -> str:
    return f"/v1/users/{_segment(user_id)}/topics"


def _bool(value: bool) -> str:
    return "true" if value else "false"


MAX_WAIT_S = 60
"""The longest long-poll the server allows."""


def _wait_timeout(http: httpx.Client | httpx.AsyncClient, wait: int | None) -> httpx.Timeout | None:
    """The client's timeout, stretched to outlast a long-poll of ``wait`` seconds."""
    if not wait:
        return None
    current = http.timeout
    return httpx.Timeout(
        connect=current.connect, read=(current.read or 0) + wait, write=current.write, pool=current.pool
    )


def _list_params(
    after: str | None,
    limit: int | None,
    before: str | None = None,
    *,
    unread: bool | None = None,
    archived: bool | None = None,
    wait: int | None = None,
) -> dict[str, str]:
    params: dict[str, str] = {}
    if wait is not None:
        if isinstance(wait, bool) or not isinstance(wait, int) or not 0 <= wait <= MAX_WAIT_S:
            raise ValueError(f"wait must be an int from 0 to {MAX_WAIT_S} seconds")
        params["wait"] = str(wait)
    if after is not None:
        params["after"] = after
    if before is not None:
        params["before"] = before
    if limit is not None:
        params["limit"] = str(limit)
    if unread is not None:
        params["unread"] = _bool(unread)
    if archived is not None:
        params["archived"] = _bool(archived)
    return params


def _subscribe_many_payload(users: Sequence[str]) -> dict[str, Any]:
    return {"users": _user_ids(users, "users")}


def _added(obj: Any) -> int:
    added = obj.get("added") if isinstance(obj, dict) else None
    if not isinstance(added, int) or isinstance(added, bool):
        raise ProtocolError(f"subscribe answer: 'added' must be int, got {added!r}")
    return added


def _state_request(action: StateAction, ids: Sequence[str] | None, up_to: str | None) -> tuple[str, dict[str, Any]]:
    """Path and body of ``POST /v1/me/notifications/{action}``."""
    return f"/v1/me/notifications/{action}", {"json": _state_payload(ids, up_to)}


def _state_payload(ids: Sequence[str] | None, up_to: str | None) -> dict[str, Any]:
    """``{"ids": [...]}`` or ``{"up_to": cursor}``: exactly one (also the stream's read frame)."""
    if (ids is None) == (up_to is None):
        raise ValueError("give ids or up_to, exactly one of them")
    if ids is not None:
        if isinstance(ids, str):
            raise TypeError("ids must be a sequence of notification ids, not a str")
        return {"ids": list(ids)}
    return {"up_to": up_to}


def _unread(obj: Any) -> int:
    unread = obj.get("unread") if isinstance(obj, dict) else None
    if not isinstance(unread, int) or isinstance(unread, bool):
        raise ProtocolError(f"unread count: 'unread' must be int, got {unread!r}")
    return unread


# --- I/O shells ---------------------------------------------------------------


class _SyncHTTP:
    """Owns one `httpx.Client`; the single place httpx errors are translated."""

    def __init__(
        self,
        base_url: str,
        credential: str,
        *,
        timeout: float | httpx.Timeout,
        transport: httpx.BaseTransport | None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            headers=_auth_headers(credential),
            timeout=timeout,
            transport=transport,
        )

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise TransportError(f"{method} {path} failed: {exc}") from exc
        _raise_for_problem(response)
        return response

    def close(self) -> None:
        """Close the connection pool. The client cannot be used afterwards."""
        self._http.close()

    def __enter__(self) -> Self:
        """Return the client; it is closed when the block exits."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the client."""
        self.close()


class _AsyncHTTP:
    """Owns one `httpx.AsyncClient`; the single place httpx errors are translated."""

    def __init__(
        self,
        base_url: str,
        credential: str,
        *,
        timeout: float | httpx.Timeout,
        transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=_auth_headers(credential),
            timeout=timeout,
            transport=transport,
        )

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise TransportError(f"{method} {path} failed: {exc}") from exc
        _raise_for_problem(response)
        return response

    def _use_credential(self, credential: str) -> None:
        """Send ``credential`` from the next request on (`Subscriber` hands in fresh tokens)."""
        self._http.headers.update(_auth_headers(credential))

    async def aclose(self) -> None:
        """Close the connection pool. The client cannot be used afterwards."""
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        """Return the client; it is closed when the block exits."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the client."""
        await self.aclose()


class TidingsClient(_SyncHTTP):
    """Synchronous client of the producer API.

    Example::

        with TidingsClient("https://tidings.example.com", api_key) as client:
            result = client.send(["alice"], "comment.created", "New comment")
            print(client.get(result.id).status)

    Args:
        base_url: The service's root URL, e.g. ``"https://tidings.example.com"``.
        api_key: A producer API key, sent as ``Authorization: Bearer``.
        timeout: Seconds per request (or an `httpx.Timeout`).
        transport: An httpx transport to use instead of the network
            (e.g. `httpx.MockTransport` in tests).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Create the client; see the class docstring for the arguments."""
        super().__init__(base_url, api_key, timeout=timeout, transport=transport)

    def send(
        self,
        users: Sequence[str] | None,
        type: str,  # noqa: A002
        title: str,
        *,
        topic: str | None = None,
        body: str | None = None,
        data: Mapping[str, Any] | None = None,
        priority: Priority | None = None,
        ttl_seconds: int | None = None,
        send_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Send one notification to some users, or to a topic's subscribers.

        Example::

            client.send(["alice"], "comment.created", "New comment")
            client.send(None, "release", "v2 is out", topic="project-7",
                        send_at=datetime(2026, 1, 5, 9, tzinfo=UTC), ttl_seconds=86400)

        Args:
            users: Recipient user ids, or ``None`` with ``topic``.
            type: Producer-defined kind, e.g. ``"comment.created"``.
            title: Short headline.
            topic: Send to this topic's subscribers instead of ``users``; they
                are resolved when delivery starts (for ``send_at``: when due).
            body: Longer text.
            data: JSON object handed to the devices as is.
            priority: ``"normal"`` or ``"high"``; the server's default when omitted.
            ttl_seconds: Hide the entries (from polls, the stream and unread
                counts) this many seconds after delivery is due.
            send_at: Deliver at this time instead of now (at most a year
                ahead); must be timezone-aware. The status is ``"scheduled"``
                until then, and `cancel` can still stop it.
            idempotency_key: Retrying with the same key never delivers twice
                (the server remembers a key for 24 h).

        Returns:
            The notification id and its status, ``"accepted"`` (or
            ``"scheduled"`` with a future ``send_at``); it is stored durably.

        Raises:
            TypeError: If ``users`` is a str, or ``send_at`` is not a datetime.
            ValueError: If not exactly one of ``users`` and ``topic`` is given,
                or ``send_at`` is naive.
            BadRequestError: If the server rejects the input (see ``field``).
            ConflictError: If ``idempotency_key`` was used for another request.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        request = _send_request(
            users, type, title, body, data, priority, idempotency_key,
            topic=topic, ttl_seconds=ttl_seconds, send_at=send_at,
        )
        response = self._request("POST", "/v1/notifications", **request)
        return SendResult.from_json(_json_body(response, "send result"))

    def send_batch(self, items: Sequence[Mapping[str, Any]]) -> list[BatchResult]:
        """Send many notifications in one request; one result per item, in order.

        Args:
            items: Each a mapping like the body of ``POST /v1/notifications``
                (``recipients`` with ``users`` or ``topic``, ``type``, ``title``,
                optional ``body``, ``data``, ``priority``, ``ttl_seconds``,
                ``send_at``) plus an optional ``idempotency_key``; `batch_item`
                builds one. A ``send_at`` may be an aware datetime. At most 1000.

        Returns:
            One `BatchResult` per item: accepted (``ok``) or refused with the
            reason. A refused item does not affect the others.

        Raises:
            ValueError: If an item's ``send_at`` is a naive datetime.
            BadRequestError: If the batch itself is malformed (empty, too long).
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        response = self._request("POST", "/v1/notifications/batch", json=_batch_payload(items))
        return _batch_results(_json_body(response, "batch results"))

    def get(self, notification_id: str) -> NotificationStatus:
        """Return the delivery status of a notification.

        Args:
            notification_id: The id from `send`.

        Returns:
            Its status and counts.

        Raises:
            NotFoundError: If there is no such notification for this key.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        response = self._request("GET", _status_path(notification_id))
        return NotificationStatus.from_json(_json_body(response, "notification status"))

    def cancel(self, notification_id: str) -> NotificationStatus:
        """Cancel a notification whose delivery has not started.

        A scheduled one can be cancelled until it is due, an accepted one while
        it still waits in the queue. Cancelling a cancelled one again answers
        the same.

        Args:
            notification_id: The id from `send`.

        Returns:
            Its status, ``"cancelled"``.

        Raises:
            ConflictError: With code ``"not_cancellable"`` when delivery has
                already started (or it is delivered or failed); nothing changed.
            NotFoundError: If there is no such notification for this key.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        response = self._request("DELETE", _status_path(notification_id))
        return NotificationStatus.from_json(_json_body(response, "notification status"))

    def subscribe(self, topic: str, user_id: str) -> None:
        """Subscribe a user to a topic; idempotent.

        Notifications sent to the topic whose delivery starts from now on reach the user.

        Args:
            topic: The topic (``[A-Za-z0-9._:@-]``, at most 128 characters).
            user_id: The user.

        Raises:
            BadRequestError: If the topic or user id is malformed.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        self._request("PUT", _subscribers_path(topic, user_id))

    def subscribe_many(self, topic: str, users: Sequence[str]) -> int:
        """Subscribe many users (at most 1000) to a topic in one request.

        Args:
            topic: The topic.
            users: The user ids; those already subscribed are left as they are.

        Returns:
            How many of them were not subscribed before.

        Raises:
            TypeError: If ``users`` is a str.
            BadRequestError: If the topic or a user id is malformed, or there
                are no users or too many.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        response = self._request("POST", _subscribers_path(topic), json=_subscribe_many_payload(users))
        return _added(_json_body(response, "subscribe answer"))

    def unsubscribe(self, topic: str, user_id: str) -> None:
        """Unsubscribe a user from a topic; idempotent.

        A notification whose delivery already started still reaches the user.

        Args:
            topic: The topic.
            user_id: The user.

        Raises:
            BadRequestError: If the topic or user id is malformed.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        self._request("DELETE", _subscribers_path(topic, user_id))

    def subscribers(self, topic: str, after: str | None = None, limit: int = 50) -> NamePage:
        """Read one page of a topic's subscribers, user ids in ascending order.

        Args:
            topic: The topic (one nobody follows has no subscribers; not an error).
            after: ``next_after`` of the previous page; from the first when omitted.
            limit: Page size, 1 to 500.

        Returns:
            The page.

        Raises:
            BadRequestError: If the topic is malformed or ``limit`` is out of range.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        response = self._request("GET", _subscribers_path(topic), params=_list_params(after, limit))
        return NamePage.from_json(_json_body(response, "name page"))

    def iter_subscribers(self, topic: str, *, page_size: int = 500) -> Iterator[str]:
        """Yield every subscriber of a topic, in ascending order, page by page.

        Args:
            topic: The topic.
            page_size: Names per request, 1 to 500.

        Yields:
            User ids.

        Raises:
            APIError: For a problem answer.
            TransportError: If a request did not complete.
        """
        after: str | None = None
        while True:
            page = self.subscribers(topic, after, page_size)
            yield from page.items
            if not page.has_more or page.next_after is None:
                return
            after = page.next_after

    def topics_of(self, user_id: str, after: str | None = None, limit: int = 50) -> NamePage:
        """Read one page of the topics a user is subscribed to, in ascending order.

        Args:
            user_id: The user.
            after: ``next_after`` of the previous page; from the first when omitted.
            limit: Page size, 1 to 500.

        Returns:
            The page.

        Raises:
            BadRequestError: If the user id is malformed or ``limit`` is out of range.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        response = self._request("GET", _topics_path(user_id), params=_list_params(after, limit))
        return NamePage.from_json(_json_body(response, "name page"))

    def iter_topics_of(self, user_id: str, *, page_size: int = 500) -> Iterator[str]:
        """Yield every topic a user is subscribed to, in ascending order, page by page.

        Args:
            user_id: The user.
            page_size: Names per request, 1 to 500.

        Yields:
            Topic names.

        Raises:
            APIError: For a problem answer.
            TransportError: If a request did not complete.
        """
        after: str | None = None
        while True:
            page = self.topics_of(user_id, after, page_size)
            yield from page.items
            if not page.has_more or page.next_after is None:
                return
            after = page.next_after


class AsyncTidingsClient(_AsyncHTTP):
    """Asynchronous client of the producer API; same methods as `TidingsClient`.

    Example::

        async with AsyncTidingsClient("https://tidings.example.com", api_key) as client:
            result = await client.send(["alice"], "comment.created", "New comment")

    Args:
        base_url: The service's root URL.
        api_key: A producer API key, sent as ``Authorization: Bearer``.
        timeout: Seconds per request (or an `httpx.Timeout`).
        transport: An async httpx transport to use instead of the network.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Create the client; see the class docstring for the arguments."""
        super().__init__(base_url, api_key, timeout=timeout, transport=transport)

    async def send(
        self,
        users: Sequence[str] | None,
        type: str,  # noqa: A002
        title: str,
        *,
        topic: str | None = None,
        body: str | None = None,
        data: Mapping[str, Any] | None = None,
        priority: Priority | None = None,
        ttl_seconds: int | None = None,
        send_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Send one notification to some users or a topic; see `TidingsClient.send`.

        Args:
            users: Recipient user ids, or ``None`` with ``topic``.
            type: Producer-defined kind.
            title: Short headline.
            topic: Send to this topic's subscribers instead of ``users``.
            body: Longer text.
            data: JSON object handed to the devices as is.
            priority: ``"normal"`` or ``"high"``.
            ttl_seconds: Hide the entries this many seconds after delivery is due.
            send_at: Deliver at this timezone-aware time instead of now.
            idempotency_key: Retrying with the same key never delivers twice.

        Returns:
            The notification id and ``"accepted"`` (or ``"scheduled"``) status.

        Raises:
            TypeError: If ``users`` is a str, or ``send_at`` is not a datetime.
            ValueError: If not exactly one of ``users`` and ``topic`` is given,
                or ``send_at`` is naive.
            APIError: For a problem answer (a subclass when the status is known).
            TransportError: If the request did not complete.
        """
        request = _send_request(
            users, type, title, body, data, priority, idempotency_key,
            topic=topic, ttl_seconds=ttl_seconds, send_at=send_at,
        )
        response = await self._request("POST", "/v1/notifications", **request)
        return SendResult.from_json(_json_body(response, "send result"))

    async def send_batch(self, items: Sequence[Mapping[str, Any]]) -> list[BatchResult]:
        """Send many notifications in one request; see `TidingsClient.send_batch`."""
        response = await self._request("POST", "/v1/notifications/batch", json=_batch_payload(items))
        return _batch_results(_json_body(response, "batch results"))

    async def get(self, notification_id: str) -> NotificationStatus:
        """Return the delivery status of a notification; see `TidingsClient.get`.

        Args:
            notification_id: The id from `send`.

        Returns:
            Its status and counts.

        Raises:
            NotFoundError: If there is no such notification for this key.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        response = await self._request("GET", _status_path(notification_id))
        return NotificationStatus.from_json(_json_body(response, "notification status"))

    async def cancel(self, notification_id: str) -> NotificationStatus:
        """Cancel a notification whose delivery has not started; see `TidingsClient.cancel`.

        Args:
            notification_id: The id from `send`.

        Returns:
            Its status, ``"cancelled"``.

        Raises:
            ConflictError: With code ``"not_cancellable"`` when delivery has already started.
            NotFoundError: If there is no such notification for this key.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        response = await self._request("DELETE", _status_path(notification_id))
        return NotificationStatus.from_json(_json_body(response, "notification status"))

    async def subscribe(self, topic: str, user_id: str) -> None:
        """Subscribe a user to a topic; idempotent. See `TidingsClient.subscribe`."""
        await self._request("PUT", _subscribers_path(topic, user_id))

    async def subscribe_many(self, topic: str, users: Sequence[str]) -> int:
        """Subscribe many users to a topic; see `TidingsClient.subscribe_many`.

        Returns:
            How many of them were not subscribed before.

        Raises:
            TypeError: If ``users`` is a str.
            APIError: For a problem answer.
            TransportError: If the request did not complete.
        """
        response = await self._request("POST", _subscribers_path(topic), json=_subscribe_many_payload(users))
        return _added(_json_body(response, "subscribe answer"))

    async def unsubscribe(self, topic: str, user_id: str) -> None:
        """Unsubscribe a user from a topic; idempotent. See `TidingsClient.unsubscribe`."""
        await self._request("DELETE", _subscribers_path(topic, user_id))

    async def subscribers(self, topic: str, after: str | None = None, limit: int = 50) -> NamePage:
        """Read one page of a topic's subscribers; see `TidingsClient.subscribers`."""
        response = await self._request("GET", _subscribers_path(topic), params=_list_params(after, limit))
        return NamePage.from_json(_json_body(response, "name page"))

    async def iter_subscribers(self, topic: str, *, page_size: int = 500) -> AsyncIterator[str]:
        """Yield every subscriber of a topic; see `TidingsClient.iter_subscribers`."""
        after: str | None = None
        while True:
            page = await self.subscribers(topic, after, page_size)
            for name in page.items:
                yield name
            if not page.has_more or page.next_after is None:
                return
            after = page.next_after

    async def topics_of(self, user_id: str, after: str | None = None, limit: int = 50) -> NamePage:
        """Read one page of a user's topics; see `TidingsClient.topics_of`."""
        response = await self._request("GET", _topics_path(user_id), params=_list_params(after, limit))
        return NamePage.from_json(_json_body(response, "name page"))

    async def iter_topics_of(self, user_id: str, *, page_size: int = 500) -> AsyncIterator[str]:
        """Yield every topic of a user; see `TidingsClient.iter_topics_of`."""
        after: str | None = None
        while True:
            page = await self.topics_of(user_id, after, page_size)
            for name in page.items:
                yield name
            if not page.has_more or page.next_after is None:
                return
            after = page.next_after


class UserClient(_SyncHTTP):
    """Synchronous client of the user API (one user's inbox).

    Example::

        with UserClient("https://tidings.example.com", user_jwt) as inbox:
            page = inbox.list_notifications()
            while page.has_more:
                page = inbox.list_notifications(after=page.next_cursor)

    Args:
        base_url: The service's root URL.
        token: The user's JWT, sent as ``Authorization: Bearer``.
        timeout: Seconds per request (or an `httpx.Timeout`).
        transport: An httpx transport to use instead of the network.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Create the client; see the class docstring for the arguments."""
        super().__init__(base_url, token, timeout=timeout, transport=transport)

    def list_notifications(
        self,
        after: str | None = None,
        limit: int | None = None,
        *,
        before: str | None = None,
        unread: bool | None = None,
        archived: bool | None = None,
        wait: int | None = None,
    ) -> Page:
        """Read one page of the inbox, in seq order (or history, newest first, with ``before``).

        Expired entries (``ttl_seconds``) are never listed, so seqs may have gaps.

        Args:
            after: Cursor to continue from (``next_cursor`` of the previous page,
                or an entry's ``cursor``); from the start of the inbox when omitted.
            limit: Page size; the server's default (50) when omitted, at most 500.
            before: History instead: the entry this cursor follows and older ones,
                newest first; pass the page's ``next_cursor`` for the next older page.
            unread: ``True``: only unread entries (``read_at`` unset); ``False``:
                only read ones; both when omitted.
            archived: ``True``: only archived entries; ``False``: only those not
                archived; both when omitted.
            wait: Long-poll: when nothing is there yet, wait up to this many seconds
                (0–60) and return as soon as an entry arrives (not with ``before``).
                The request's read timeout is stretched by as much.

        Returns:
            The page.

        Raises:
            BadRequestError: If the cursor is malformed (``invalid_cursor``).
            CursorResetError: If the inbox was reset: start again with ``after=None``.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        params = _list_params(after, limit, before, unread=unread, archived=archived, wait=wait)
        timeout = _wait_timeout(self._http, wait)
        extra = {"timeout": timeout} if timeout is not None else {}
        response = self._request("GET", "/v1/me/notifications", params=params, **extra)
        return Page.from_json(_json_body(response, "inbox page"))

    def mark_read(self, ids: Sequence[str] | None = None, up_to: str | None = None) -> StateChange:
        """Mark entries read: those of some notification ids, or every entry up to a cursor.

        Entries already read keep their ``read_at``. Every connected device of
        the user gets a ``state`` frame with the new unread count.

        Args:
            ids: Notification ids (an entry's ``id``, 1 to 500); unknown ones are ignored.
            up_to: Instead of ``ids``: a cursor; every entry up to and including it.

        Returns:
            How many entries changed, the unread count after the change, and the head.

        Raises:
            TypeError: If ``ids`` is a str.
            ValueError: If not exactly one of ``ids`` and ``up_to`` is given.
            BadRequestError: If an id or the cursor is malformed
                (``invalid_request`` / ``invalid_cursor``).
            CursorResetError: If ``up_to`` is from before a reset of the inbox.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        return self._change_state("read", ids, up_to)

    def mark_unread(self, ids: Sequence[str] | None = None, up_to: str | None = None) -> StateChange:
        """Mark entries unread again; arguments, answer and errors as in `mark_read`."""
        return self._change_state("unread", ids, up_to)

    def archive(self, ids: Sequence[str] | None = None, up_to: str | None = None) -> StateChange:
        """Archive entries (they no longer count as unread); as in `mark_read`."""
        return self._change_state("archive", ids, up_to)

    def unarchive(self, ids: Sequence[str] | None = None, up_to: str | None = None) -> StateChange:
        """Take entries out of the archive; arguments, answer and errors as in `mark_read`."""
        return self._change_state("unarchive", ids, up_to)

    def _change_state(self, action: StateAction, ids: Sequence[str] | None, up_to: str | None) -> StateChange:
        path, request = _state_request(action, ids, up_to)
        response = self._request("POST", path, **request)
        return StateChange.from_json(_json_body(response, "state change"))

    def unread_count(self) -> int:
        """Return how many entries of the inbox are unread.

        Returns:
            The unread count.

        Raises:
            APIError: For a problem answer.
            TransportError: If the request did not complete.
        """
        response = self._request("GET", "/v1/me/unread-count")
        return _unread(_json_body(response, "unread count"))

    def unread_and_head(self) -> UnreadCount:
        """Return the unread count and the inbox head it is taken to, read together.

        Listing with ``after=`` that head gives exactly the entries the count
        does not hold yet (as after a stream's ``ready`` frame).

        Returns:
            The count and the head cursor.

        Raises:
            APIError: For a problem answer.
            ProtocolError: If the answer has no head cursor (an older server).
            TransportError: If the request did not complete.
        """
        response = self._request("GET", "/v1/me/unread-count")
        return UnreadCount.from_json(_json_body(response, "unread count"))


class AsyncUserClient(_AsyncHTTP):
    """Asynchronous client of the user API; same methods as `UserClient`.

    Args:
        base_url: The service's root URL.
        token: The user's JWT, sent as ``Authorization: Bearer``.
        timeout: Seconds per request (or an `httpx.Timeout`).
        transport: An async httpx transport to use instead of the network.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float | httpx.Timeout = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Create the client; see the class docstring for the arguments."""
        super().__init__(base_url, token, timeout=timeout, transport=transport)

    async def list_notifications(
        self,
        after: str | None = None,
        limit: int | None = None,
        *,
        before: str | None = None,
        unread: bool | None = None,
        archived: bool | None = None,
        wait: int | None = None,
    ) -> Page:
        """Read one page of the inbox; see `UserClient.list_notifications`.

        Args:
            after: Cursor to continue from; from the start when omitted.
            limit: Page size; the server's default when omitted.
            before: History instead, newest first, from this cursor down.
            unread: ``True``: only unread entries; ``False``: only read ones.
            archived: ``True``: only archived entries; ``False``: only the others.
            wait: Long-poll up to this many seconds (0–60) when nothing is there yet.

        Returns:
            The page.

        Raises:
            CursorResetError: If the inbox was reset: start again with ``after=None``.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        params = _list_params(after, limit, before, unread=unread, archived=archived, wait=wait)
        timeout = _wait_timeout(self._http, wait)
        extra = {"timeout": timeout} if timeout is not None else {}
        response = await self._request("GET", "/v1/me/notifications", params=params, **extra)
        return Page.from_json(_json_body(response, "inbox page"))

    async def mark_read(self, ids: Sequence[str] | None = None, up_to: str | None = None) -> StateChange:
        """Mark entries read, by notification ids or up to a cursor; see `UserClient.mark_read`.

        Args:
            ids: Notification ids (1 to 500); unknown ones are ignored.
            up_to: Instead of ``ids``: every entry up to and including this cursor.

        Returns:
            How many entries changed, the unread count after the change, and the head.

        Raises:
            TypeError: If ``ids`` is a str.
            ValueError: If not exactly one of ``ids`` and ``up_to`` is given.
            BadRequestError: If an id or the cursor is malformed.
            CursorResetError: If ``up_to`` is from before a reset of the inbox.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        return await self._change_state("read", ids, up_to)

    async def mark_unread(self, ids: Sequence[str] | None = None, up_to: str | None = None) -> StateChange:
        """Mark entries unread again; as in `mark_read`."""
        return await self._change_state("unread", ids, up_to)

    async def archive(self, ids: Sequence[str] | None = None, up_to: str | None = None) -> StateChange:
        """Archive entries (they no longer count as unread); as in `mark_read`."""
        return await self._change_state("archive", ids, up_to)

    async def unarchive(self, ids: Sequence[str] | None = None, up_to: str | None = None) -> StateChange:
        """Take entries out of the archive; as in `mark_read`."""
        return await self._change_state("unarchive", ids, up_to)

    async def _change_state(
        self, action: StateAction, ids: Sequence[str] | None, up_to: str | None
    ) -> StateChange:
        path, request = _state_request(action, ids, up_to)
        response = await self._request("POST", path, **request)
        return StateChange.from_json(_json_body(response, "state change"))

    async def unread_count(self) -> int:
        """Return how many entries of the inbox are unread.

        Returns:
            The unread count.

        Raises:
            APIError: For a problem answer.
            TransportError: If the request did not complete.
        """
        response = await self._request("GET", "/v1/me/unread-count")
        return _unread(_json_body(response, "unread count"))

    async def unread_and_head(self) -> UnreadCount:
        """Return the unread count and the head it is taken to; see `UserClient.unread_and_head`.

        Returns:
            The count and the head cursor.

        Raises:
            APIError: For a problem answer.
            ProtocolError: If the answer has no head cursor (an older server).
            TransportError: If the request did not complete.
        """
        response = await self._request("GET", "/v1/me/unread-count")
        return UnreadCount.from_json(_json_body(response, "unread count"))
