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
from collections.abc import Mapping, Sequence
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
from ._models import BatchResult, NotificationStatus, Page, Priority, SendResult

__all__ = ["AsyncTidingsClient", "AsyncUserClient", "TidingsClient", "UserClient"]

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


def _send_payload(
    users: Sequence[str],
    type: str,  # noqa: A002 - the wire field's name
    title: str,
    body: str | None,
    data: Mapping[str, Any] | None,
    priority: Priority | None,
) -> dict[str, Any]:
    # A lone str is a Sequence[str] too; sending to "a", "l", "i", "c", "e" is never meant.
    if isinstance(users, str):
        raise TypeError("users must be a sequence of user ids, not a str")
    payload: dict[str, Any] = {
        "recipients": {"users": list(users)},
        "type": type,
        "title": title,
    }
    if body is not None:
        payload["body"] = body
    if data is not None:
        payload["data"] = dict(data)
    if priority is not None:
        payload["priority"] = priority
    return payload


def _send_request(
    users: Sequence[str],
    type: str,  # noqa: A002
    title: str,
    body: str | None,
    data: Mapping[str, Any] | None,
    priority: Priority | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    headers = {"Content-Type": "application/json"}
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    payload = _send_payload(users, type, title, body, data, priority)
    return {"content": json.dumps(payload).encode(), "headers": headers}


def _batch_results(obj: Any) -> list[BatchResult]:
    results = obj.get("results") if isinstance(obj, dict) else None
    if not isinstance(results, list):
        raise ProtocolError(f"batch answer must hold a results list, got {obj!r}")
    return [BatchResult.from_json(result) for result in results]


def _status_path(notification_id: str) -> str:
    return "/v1/notifications/" + quote(notification_id, safe="")


def _list_params(after: str | None, limit: int | None, before: str | None = None) -> dict[str, str]:
    params: dict[str, str] = {}
    if after is not None:
        params["after"] = after
    if before is not None:
        params["before"] = before
    if limit is not None:
        params["limit"] = str(limit)
    return params


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
        users: Sequence[str],
        type: str,  # noqa: A002
        title: str,
        *,
        body: str | None = None,
        data: Mapping[str, Any] | None = None,
        priority: Priority | None = None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Send one notification to some users.

        Args:
            users: Recipient user ids.
            type: Producer-defined kind, e.g. ``"comment.created"``.
            title: Short headline.
            body: Longer text.
            data: JSON object handed to the devices as is.
            priority: ``"normal"`` or ``"high"``; the server's default when omitted.
            idempotency_key: Retrying with the same key never delivers twice
                (the server remembers a key for 24 h).

        Returns:
            The notification id and ``"accepted"`` status; it is stored durably.

        Raises:
            TypeError: If ``users`` is a str.
            BadRequestError: If the server rejects the input (see ``field``).
            ConflictError: If ``idempotency_key`` was used for another request.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        request = _send_request(users, type, title, body, data, priority, idempotency_key)
        response = self._request("POST", "/v1/notifications", **request)
        return SendResult.from_json(_json_body(response, "send result"))

    def send_batch(self, items: Sequence[Mapping[str, Any]]) -> list[BatchResult]:
        """Send many notifications in one request; one result per item, in order.

        Args:
            items: Each a mapping like the body of ``POST /v1/notifications``
                (``recipients``, ``type``, ``title``, optional ``body``, ``data``,
                ``priority``) plus an optional ``idempotency_key``. At most 1000.

        Returns:
            One `BatchResult` per item: accepted (``ok``) or refused with the
            reason. A refused item does not affect the others.

        Raises:
            BadRequestError: If the batch itself is malformed (empty, too long).
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        payload = {"notifications": [dict(item) for item in items]}
        response = self._request("POST", "/v1/notifications/batch", json=payload)
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
        users: Sequence[str],
        type: str,  # noqa: A002
        title: str,
        *,
        body: str | None = None,
        data: Mapping[str, Any] | None = None,
        priority: Priority | None = None,
        idempotency_key: str | None = None,
    ) -> SendResult:
        """Send one notification to some users; see `TidingsClient.send`.

        Args:
            users: Recipient user ids.
            type: Producer-defined kind.
            title: Short headline.
            body: Longer text.
            data: JSON object handed to the devices as is.
            priority: ``"normal"`` or ``"high"``.
            idempotency_key: Retrying with the same key never delivers twice.

        Returns:
            The notification id and ``"accepted"`` status.

        Raises:
            TypeError: If ``users`` is a str.
            APIError: For a problem answer (a subclass when the status is known).
            TransportError: If the request did not complete.
        """
        request = _send_request(users, type, title, body, data, priority, idempotency_key)
        response = await self._request("POST", "/v1/notifications", **request)
        return SendResult.from_json(_json_body(response, "send result"))

    async def send_batch(self, items: Sequence[Mapping[str, Any]]) -> list[BatchResult]:
        """Send many notifications in one request; see `TidingsClient.send_batch`."""
        payload = {"notifications": [dict(item) for item in items]}
        response = await self._request("POST", "/v1/notifications/batch", json=payload)
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
        self, after: str | None = None, limit: int | None = None, *, before: str | None = None
    ) -> Page:
        """Read one page of the inbox, in seq order (or history, newest first, with ``before``).

        Args:
            after: Cursor to continue from (``next_cursor`` of the previous page,
                or an entry's ``cursor``); from the start of the inbox when omitted.
            limit: Page size; the server's default (50) when omitted, at most 500.
            before: History instead: the entry this cursor follows and older ones,
                newest first; pass the page's ``next_cursor`` for the next older page.

        Returns:
            The page.

        Raises:
            BadRequestError: If the cursor is malformed (``invalid_cursor``).
            CursorResetError: If the inbox was reset: start again with ``after=None``.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        response = self._request("GET", "/v1/me/notifications", params=_list_params(after, limit, before))
        return Page.from_json(_json_body(response, "inbox page"))

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
        self, after: str | None = None, limit: int | None = None, *, before: str | None = None
    ) -> Page:
        """Read one page of the inbox; see `UserClient.list_notifications`.

        Args:
            after: Cursor to continue from; from the start when omitted.
            limit: Page size; the server's default when omitted.
            before: History instead, newest first, from this cursor down.

        Returns:
            The page.

        Raises:
            CursorResetError: If the inbox was reset: start again with ``after=None``.
            APIError: For any other problem answer.
            TransportError: If the request did not complete.
        """
        params = _list_params(after, limit, before)
        response = await self._request("GET", "/v1/me/notifications", params=params)
        return Page.from_json(_json_body(response, "inbox page"))

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

