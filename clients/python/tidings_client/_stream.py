"""Live inbox stream over WebSocket, with a long-poll fallback: `Subscriber`.

The subscriber is a plain async iterator with no background task: each
``__anext__`` reads frames from the current socket and, when the socket is
gone, reconnects (after a delay chosen by the close code) and resumes from the
cursor of the last entry it yielded. The wire is at-least-once, so entries
with ``seq <= last yielded seq`` are dropped here and the application sees each
entry once, in seq order. Seqs may have gaps (entries that expired by their
``ttl_seconds`` are never sent): a gap is not an error and asks for nothing.

Fallback ladder: when the WebSocket cannot be had (``fallback_after``
consecutive attempts that never reach ``ready``: refused or timed-out
connects, handshakes refused by a proxy, sockets closed before ``ready``; or
``fallback_after`` drops of live sockets within ``fallback_window`` seconds),
the subscriber goes DEGRADED and long-polls ``GET /v1/me/notifications
?after=<cursor>&wait=<poll_wait>`` in the same iterator, from the same cursor,
with the same dedupe. Every ``retry_interval`` seconds (jittered) it tries the
WebSocket once; when that socket reaches ``ready`` it is LIVE again, else it
polls on. A poll that fails (transport error, 5xx, 429) backs off with the
same `Backoff`, honouring ``Retry-After`` up to the cap, and the state is
OFFLINE until a poll answers again; then the WebSocket is tried at once (the
server was down, maybe not only the path to it). A fresh subscriber that
never went live starts polling from the head (``GET /v1/me/unread-count``
gives the head and the count together), never from the start of the inbox.

Read state: the unread count comes from the server in ``ready`` and in each
``state`` frame (sent to every device of the user after any read / archive
change, `Subscriber.mark_read` included); between those, each new live entry
that is neither read nor archived adds one locally. The server's count always
wins when the next ``ready`` or ``state`` arrives. While polling there are no
``state`` frames: the count is re-read from ``GET /v1/me/unread-count`` when
the poll is caught up and idle, and new unread entries add one in between.

Close codes and what the subscriber does:

====  ==================  ==================================================
code  meaning             reaction
====  ==================  ==================================================
1008  policy (auth)       fresh token from the provider and reconnect once;
                          `AuthenticationError` when there is no provider or
                          the fresh token is rejected too
1012  service restart     reconnect after a random short delay, resume
4001  token expired       like 1008
4008  too slow            reconnect at once (jittered), resume
4009  cursor reset        call ``on_reset``, forget cursor and seq, restart
                          from the head
else  drop, 1000, 1009,   reconnect with full-jitter exponential backoff,
      silence             resume; long-poll after ``fallback_after`` attempts
                          that never reach ``ready`` (or as many drops in
                          ``fallback_window``)
====  ==================  ==================================================

Handshake and poll answers:

=======================  ===================================================
answer                   reaction
=======================  ===================================================
handshake 401            `AuthenticationError` (terminal)
handshake 403 with a     `AuthenticationError` (terminal): the service
JSON problem body        itself refused
handshake 403 without,   a failed attempt: "WebSocket blocked" (a proxy);
other statuses, refused  counts toward ``fallback_after``
connects, timeouts
poll 401                 fresh token from the provider and retry once, then
                         `AuthenticationError`
poll 410 / 400           call ``on_reset``, forget cursor and seq, restart
invalid_cursor           from the head
poll transport error,    OFFLINE; full-jitter backoff, ``Retry-After``
5xx, 429, other 4xx      honoured up to the backoff's cap
=======================  ===================================================
"""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import logging
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from types import TracebackType
from typing import Any, Self, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from ._backoff import Backoff
from ._client import MAX_WAIT_S, USER_AGENT, AsyncUserClient, _state_payload
from ._errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    CursorResetError,
    ProtocolError,
    TransportError,
)
from ._models import ConnectionState, Notification, StateFrame

__all__ = ["Subscriber", "TokenSource"]

logger = logging.getLogger("tidings_client")

TokenSource = str | Callable[[], str | Awaitable[str]]
"""A user JWT, or a callable returning one (or an awaitable of one).

A callable is called before every (re)connect, so it can hand out fresh tokens.
"""

_CLOSE_POLICY = 1008
_CLOSE_SERVICE_RESTART = 1012
_CLOSE_TOKEN_EXPIRED = 4001
_CLOSE_TOO_SLOW = 4008
_CLOSE_CURSOR_RESET = 4009
_AUTH_CLOSES = (_CLOSE_POLICY, _CLOSE_TOKEN_EXPIRED)

# The server pings every ping_interval; silence for this many intervals means
# the server or the path to it is gone even if TCP has not noticed.
_SILENCE_FACTOR = 2.0
# Spread a drained service's devices over up to base * 2**2 seconds.
_RESTART_SPREAD = 2
# Entries are bounded server-side (payload_too_large); this only guards memory.
_MAX_FRAME_BYTES = 16 * 2**20
_CLOSE_TIMEOUT = 2.0

_SCHEMES = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}
_HTTP_SCHEMES = {"ws": "http", "wss": "https"}
# A server-announced restart is not the path failing: it does not count as a drop.
_NOT_DROPS = (*_AUTH_CLOSES, _CLOSE_CURSOR_RESET, _CLOSE_SERVICE_RESTART)
# States of a WebSocket retry while polling: the app keeps seeing DEGRADED until LIVE.
_PROBE_STATES = (ConnectionState.CONNECTING, ConnectionState.CONNECTED, ConnectionState.DISCONNECTED)

_T = TypeVar("_T")


class _Stopped(Exception):
    """`Subscriber.close` cancelled the pending poll request."""


def stream_url(base_url: str) -> str:
    """Return the WebSocket URL of the stream for a service root URL.

    Args:
        base_url: ``http(s)://host[:port][/prefix]`` (``ws(s)://`` is accepted too).

    Returns:
        ``ws(s)://host[:port][/prefix]/v1/stream``.

    Raises:
        ValueError: If the URL has no host or an unsupported scheme.
    """
    parts = urlsplit(base_url)
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.netloc:
        raise ValueError(f"base_url must be http(s)://host[:port], got {base_url!r}")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/v1/stream", "", ""))


def _http_base(stream: str) -> str:
    """The HTTP root URL of the service whose stream URL is ``stream``."""
    parts = urlsplit(stream)
    root = parts.path.removesuffix("/v1/stream")
    return urlunsplit((_HTTP_SCHEMES[parts.scheme], parts.netloc, root, "", ""))


def _is_problem(response: Any) -> bool:
    """Whether a refused handshake came with a JSON problem body (from the service, not a proxy)."""
    try:
        body = json.loads(response.body or b"")
    except (ValueError, TypeError):
        return False
    return isinstance(body, dict) and isinstance(body.get("code"), str)


def _token_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (seconds since the epoch), read without verifying it."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        exp = claims.get("exp") if isinstance(claims, dict) else None
    except (IndexError, ValueError, TypeError):
        return None
    return float(exp) if isinstance(exp, int | float) and not isinstance(exp, bool) else None


async def _call(callback: Callable[..., object], *args: Any) -> None:
    result = callback(*args)
    if inspect.isawaitable(result):
        await result


class Subscriber:
    """Live stream of one user's inbox that survives drops without loss or duplicates.

    Example::

        async with Subscriber("https://tidings.example.com", get_token) as sub:
            async for notification in sub:
                show(notification)
                save_cursor(sub.cursor)  # resume here after a restart

    The connection opens on the first iteration. Iterate from one task at a
    time; `close` may be called from any task and ends the iteration (a
    pending long-poll request too).

    When the WebSocket is blocked (a proxy refusing upgrades) or keeps
    dropping, the same iterator goes on by long-polling the HTTP API (state
    `ConnectionState.DEGRADED`, `degraded` is ``True``) and retries the
    WebSocket every ``retry_interval`` seconds; nothing is lost or repeated at
    either switch, since both resume from `cursor`. While degraded there are
    no ``state`` frames and `mark_read` returns ``False``: change read state
    with `AsyncUserClient.mark_read` (or `UserClient.mark_read`).

    Args:
        base_url: The service's root URL, ``http(s)://host:port``.
        token: The user's JWT, or a callable (sync or async) returning one,
            called before every (re)connect and every poll request, and again
            shortly before the current token's ``exp`` (while the application
            iterates): the fresh token goes over the open socket as an
            ``auth`` frame, so the stream is not closed with 4001.
        cursor: Resume after this cursor (e.g. a saved `cursor`); from the
            head (only what arrives from now on) when omitted.
        on_reset: Called (sync or async, no arguments) when the inbox was reset
            (close 4009): the stream restarts from the head and seqs restart.
        on_state: Called (sync or async) with a `StateFrame` for each
            ``{"type": "state", ...}`` frame: entries were read, unread,
            archived or unarchived, on any device of the user or over HTTP.
            `unread` is already updated when it is called. A malformed state
            frame is logged and skipped (the state is on each entry anyway).
        on_connection_state: Called with each `ConnectionState` change (never
            twice in a row with the same state). WebSocket retries while
            degraded are not reported: the state stays `DEGRADED` (or
            `OFFLINE`) until one reaches `LIVE`.
        backoff: Reconnect (and failed poll) delay strategy; `Backoff()` when omitted.
        ping_interval: The server's ping interval in seconds; the connection
            is presumed dead after ``2 * ping_interval`` without any frame.
        open_timeout: Seconds allowed for the WebSocket handshake, and for
            each poll request on top of its ``wait``.
        fallback_after: Switch to long-poll after this many consecutive
            WebSocket attempts that never reach ``ready`` (refused, timed out,
            a handshake refused by a proxy, closed before ``ready``), or after
            this many drops of live sockets within ``fallback_window``
            seconds; ``None``: never poll.
        fallback_window: Seconds over which live-socket drops are counted.
        poll_wait: Seconds each long-poll waits for an entry (1 to 60).
        retry_interval: While degraded, try the WebSocket again about this
            often (in seconds, jittered by 20 %).
        transport: An async httpx transport for the poll requests instead of
            the network (tests).
    """

    def __init__(
        self,
        base_url: str,
        token: TokenSource,
        *,
        cursor: str | None = None,
        on_reset: Callable[[], object] | None = None,
        on_state: Callable[[StateFrame], object] | None = None,
        on_connection_state: Callable[[ConnectionState], object] | None = None,
        backoff: Backoff | None = None,
        ping_interval: float = 10.0,
        open_timeout: float = 10.0,
        fallback_after: int | None = 3,
        fallback_window: float = 60.0,
        poll_wait: int = 25,
        retry_interval: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Create the subscriber; see the class docstring for the arguments."""
        if not ping_interval > 0:
            raise ValueError(f"ping_interval must be > 0, got {ping_interval!r}")
        if not open_timeout > 0:
            raise ValueError(f"open_timeout must be > 0, got {open_timeout!r}")
        if fallback_after is not None and (isinstance(fallback_after, bool) or not fallback_after >= 1):
            raise ValueError(f"fallback_after must be >= 1 or None, got {fallback_after!r}")
        if not fallback_window > 0 or not retry_interval > 0:
            raise ValueError("fallback_window and retry_interval must be > 0")
        if isinstance(poll_wait, bool) or not isinstance(poll_wait, int) or not 1 <= poll_wait <= MAX_WAIT_S:
            raise ValueError(f"poll_wait must be an int from 1 to {MAX_WAIT_S}, got {poll_wait!r}")
        if not (isinstance(token, str) and token) and not callable(token):
            raise TypeError("token must be a non-empty str or a callable returning one")
        self._url = stream_url(base_url)
        self._token = token
        self._cursor = cursor
        self._on_reset = on_reset
        self._on_state = on_state
        self._on_connection_state = on_connection_state
        self._backoff = backoff if backoff is not None else Backoff()
        self._silence_timeout = ping_interval * _SILENCE_FACTOR
        self._open_timeout = open_timeout
        self._fallback_after = fallback_after
        self._fallback_window = fallback_window
        self._poll_wait = poll_wait
        self._retry_interval = retry_interval
        self._transport = transport

        self._ws: ClientConnection | None = None
        self._refresh_at: float | None = None  # monotonic time to send a fresh `auth` frame
        self._live = False  # the current socket got `ready`
        self._last_seq: int | None = None
        self._unread: int | None = None
        self._counted_to: int | None = None  # entries up to this seq are in `_unread` already
        self._failures = 0  # consecutive attempts that never went live
        self._auth_rejections = 0  # consecutive 1008/4001 closes before `ready`
        self._next_delay = 0.0
        self._error_frame: dict[str, Any] | None = None
        self._closed = False
        self._stopped = asyncio.Event()
        self._state: ConnectionState | None = None
        self._drops: deque[float] = deque()  # monotonic times live sockets were lost

        # Long-poll mode.
        self._degraded = False
        self._probe_at = 0.0  # monotonic time of the next WebSocket retry
        self._user: AsyncUserClient | None = None
        self._request: asyncio.Task[Any] | None = None  # the pending poll request
        self._pending: deque[Notification] = deque()  # entries of the last page, not yet yielded
        self._more = False  # the last page said has_more: fetch the next without waiting
        self._recount = False  # re-read the unread count before the next page
        self._poll_failures = 0

    @property
    def url(self) -> str:
        """The WebSocket URL the subscriber connects to."""
        return self._url

    @property
    def cursor(self) -> str | None:
        """Cursor of the last yielded entry, else the head cursor from ``ready`` (or, degraded, the polled head).

        ``None`` before the first ``ready`` (or head read) when no cursor was
        given, and after a reset until the next one. Save it to resume a later
        session; it is also where a switch between WebSocket and polling resumes.
        """
        return self._cursor

    @property
    def last_seq(self) -> int | None:
        """Seq of the last yielded entry (``None`` before any, and after a reset)."""
        return self._last_seq

    @property
    def unread(self) -> int | None:
        """The inbox's unread count, ``None`` before the first ``ready``.

        Set from the server's count in each ``ready`` and ``state`` frame; in
        between, each new live entry that is neither read nor archived adds
        one. The local additions are a best effort: an entry and a state change
        can cross on the wire, and an entry that expires (``ttl_seconds``) is
        not subtracted; the next server count corrects both. While degraded
        (long-poll) no ``state`` frames come: the count is read from
        ``GET /v1/me/unread-count`` when polling starts from the head and again
        whenever a long-poll comes back empty, so a change made elsewhere shows
        up within about ``poll_wait`` seconds.
        """
        return self._unread

    @property
    def connected(self) -> bool:
        """``True`` while a live-mode socket is open and authenticated (`mark_read` can send)."""
        return self._ws is not None and not self._closed and not self._degraded

    @property
    def state(self) -> ConnectionState | None:
        """The last `ConnectionState` reported to ``on_connection_state`` (``None`` before any)."""
        return self._state

    @property
    def degraded(self) -> bool:
        """``True`` while entries come by long-poll (the WebSocket is blocked or keeps dropping)."""
        return self._degraded and not self._closed

    async def mark_read(self, ids: Sequence[str] | None = None, up_to: str | None = None) -> bool:
        """Mark entries read over the stream: some notification ids, or every entry up to a cursor.

        Sends ``{"type": "read", "ids": [...]}`` or ``{"type": "read", "up_to": cursor}``.
        Nothing comes back to this call: the server answers every device of the
        user (this one too) with a ``state`` frame, which updates `unread` and
        goes to ``on_state``. A frame the server cannot apply (an unknown cursor,
        say) is ignored by it; use `UserClient.mark_read` to get errors.

        Args:
            ids: Notification ids (an entry's ``id``, 1 to 500).
            up_to: Instead of ``ids``: a cursor, e.g. `cursor` or an entry's ``cursor``.

        Returns:
            ``True`` when the frame was sent, ``False`` when there is no open
            connection right now, degraded mode included (nothing is queued;
            retry, or use `AsyncUserClient.mark_read`).

        Raises:
            TypeError: If ``ids`` is a str.
            ValueError: If not exactly one of ``ids`` and ``up_to`` is given.
        """
        frame = {"type": "read", **_state_payload(ids, up_to)}
        ws = self._ws
        if ws is None or self._closed or self._degraded:
            return False
        try:
            await ws.send(json.dumps(frame))
        except ConnectionClosed:
            return False  # the reading task sees the close and reconnects
        return True

    @property
    def closed(self) -> bool:
        """``True`` once `close` was called or a terminal error was raised."""
        return self._closed

    def __aiter__(self) -> Self:
        """Return the subscriber itself."""
        return self

    async def __anext__(self) -> Notification:
        """Return the next entry, reconnecting and resuming as needed.

        Returns:
            The next entry, in seq order, never one already yielded.

        Raises:
            StopAsyncIteration: After `close`.
            AuthenticationError: If the server rejects the token for good.
            ProtocolError: If the server sends a malformed entry or page.
        """
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._pending:
                entry = self._pending.popleft()
                if self._accept(entry, counts=True):
                    return entry
                continue
            ws = self._ws
            if ws is None:
                await self._without_socket()
                continue
            wait = self._silence_timeout
            if self._refresh_at is not None:
                wait = max(0.0, min(wait, self._refresh_at - time.monotonic()))
            try:
                raw = await asyncio.wait_for(ws.recv(), wait)
            except TimeoutError:
                if self._refresh_at is not None and time.monotonic() >= self._refresh_at:
                    await self._refresh_token(ws)
                    continue
                logger.info("no frame for %.1f s, reconnecting", self._silence_timeout)
                # A silent peer will not answer a closing handshake either.
                ws.transport.abort()
                await self._after_close(ws, None, "no frame from the server in time")
                continue
            except ConnectionClosed as exc:
                code, reason = (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (None, "")
                await self._after_close(ws, code, reason)
                continue
            entry = await self._on_frame(ws, raw)
            if entry is not None:
                return entry

    async def close(self) -> None:
        """Stop the subscriber and close its connection; idempotent.

        A pending ``__anext__`` in another task ends with `StopAsyncIteration`.
        """
        if self._closed:
            return
        self._closed = True
        self._stopped.set()
        request = self._request
        if request is not None:
            request.cancel()  # a long-poll may have up to poll_wait seconds to go
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        user, self._user = self._user, None
        if user is not None:
            if request is not None:
                await asyncio.wait({request})  # let it unwind before its pool closes
            await user.aclose()
        await self._emit(ConnectionState.CLOSED)

    async def __aenter__(self) -> Self:
        """Return the subscriber; it is closed when the block exits."""
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the subscriber."""
        await self.close()

    # --- connection life cycle ------------------------------------------------

    async def _without_socket(self) -> None:
        """One step with no socket: wait out a delay, or connect, or poll."""
        if not self._degraded and self._ws_failing():
            self._degrade()
        delay, self._next_delay = self._next_delay, 0.0
        if delay > 0:
            await self._sleep(delay)
            return
        if self._degraded and time.monotonic() < self._probe_at:
            await self._poll()
        else:
            await self._connect()  # while degraded: the periodic retry, one attempt

    def _ws_failing(self) -> bool:
        """Whether the WebSocket failed often enough to poll instead."""
        limit = self._fallback_after
        if limit is None:
            return False
        horizon = time.monotonic() - self._fallback_window
        while self._drops and self._drops[0] < horizon:
            self._drops.popleft()
        return self._failures >= limit or len(self._drops) >= limit

    def _degrade(self) -> None:
        logger.warning(
            "the stream at %s is blocked or keeps dropping (%d failed attempts, %d recent drops); "
            "long-polling instead",
            self._url, self._failures, len(self._drops),
        )
        self._degraded = True
        self._failures = 0
        self._drops.clear()
        self._next_delay = 0.0  # the WebSocket's backoff; polling starts at once
        self._schedule_probe()

    def _schedule_probe(self) -> None:
        # Jittered, so the devices behind one broken proxy do not retry in step.
        self._probe_at = time.monotonic() + self._retry_interval * random.uniform(0.8, 1.2)

    async def _connect(self) -> None:
        await self._emit(ConnectionState.CONNECTING)
        token = await self._fetch_token()
        try:
            ws = await connect(
                self._url,
                open_timeout=self._open_timeout,
                close_timeout=_CLOSE_TIMEOUT,
                # The server's own {"type": "ping"} frames and the silence timeout
                # detect a dead server; protocol pings would only duplicate that.
                ping_interval=None,
                max_size=_MAX_FRAME_BYTES,
                user_agent_header=USER_AGENT,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            # A 403 without a problem body is a proxy blocking WebSockets, not a verdict on the token.
            if status == 401 or (status == 403 and _is_problem(exc.response)):
                await self.close()
                raise AuthenticationError(
                    status, "unauthorized", f"stream handshake rejected: HTTP {status}"
                ) from exc
            await self._connect_failed(exc)
            return
        except (OSError, TimeoutError, WebSocketException) as exc:
            await self._connect_failed(exc)
            return
        if self._closed:  # close() ran while the handshake was in flight
            await ws.close()
            return
        auth: dict[str, str] = {"type": "auth", "token": token}
        if self._cursor is not None:
            auth["cursor"] = self._cursor
        self._ws = ws
        self._live = False
        try:
            await ws.send(json.dumps(auth))
        except ConnectionClosed:
            return  # the next recv() raises again and reports the close code
        self._schedule_refresh(token)
        await self._emit(ConnectionState.CONNECTED)

    def _schedule_refresh(self, token: str) -> None:
        """With a token provider, plan a fresh ``auth`` frame before ``token`` expires.

        The server closes a stream with 4001 when its token's ``exp`` passes; sending a
        fresh token on the open socket keeps it (and spares a reconnect and a replay).
        """
        expiry = _token_expiry(token) if callable(self._token) else None
        if expiry is None:
            self._refresh_at = None
            return
        lifetime = expiry - time.time()
        margin = max(1.0, min(30.0, lifetime * 0.2))
        self._refresh_at = time.monotonic() + max(0.5, lifetime - margin)

    async def _refresh_token(self, ws: ClientConnection) -> None:
        self._refresh_at = None
        try:
            token = await self._fetch_token()
            await ws.send(json.dumps({"type": "auth", "token": token}))
        except ConnectionClosed:
            return  # the next recv() reports the close
        except Exception:  # noqa: BLE001 - the app's provider failed: the server's 4001 will tell
            logger.warning("token refresh failed; the stream ends when the token expires", exc_info=True)
            return
        self._schedule_refresh(token)

    async def _connect_failed(self, exc: Exception) -> None:
        if self._degraded:
            logger.info("the WebSocket is still unavailable (%s); polling on", exc)
            self._schedule_probe()
            return
        self._failures += 1
        self._next_delay = self._backoff.compute(self._failures)
        logger.info(
            "connecting to %s failed (%s), retrying in %.2f s", self._url, exc, self._next_delay
        )
        await self._emit(ConnectionState.DISCONNECTED)

    async def _after_close(self, ws: ClientConnection, code: int | None, reason: str) -> None:
        """Choose what follows a lost socket: a delay, a reset, or a terminal error."""
        if self._ws is ws:
            self._ws = None
        went_live, self._live = self._live, False
        error, self._error_frame = self._error_frame, None
        if self._closed:
            return
        if not went_live:
            self._failures += 1
        elif code not in _NOT_DROPS:
            self._drops.append(time.monotonic())
        detail = str((error or {}).get("message") or reason or f"closed with code {code}")

        if code in _AUTH_CLOSES:
            self._auth_rejections += 1
            if not callable(self._token) or self._auth_rejections > 1:
                await self.close()
                default = "token_expired" if code == _CLOSE_TOKEN_EXPIRED else "unauthorized"
                error_code = str((error or {}).get("code") or default)
                raise AuthenticationError(401, error_code, detail, close_code=code)
            delay = 0.0  # a fresh token is fetched on the way in
        elif code == _CLOSE_CURSOR_RESET:
            await self._reset()
            delay = 0.0
        elif code == _CLOSE_SERVICE_RESTART:
            delay = self._backoff.compute(_RESTART_SPREAD)
        elif code == _CLOSE_TOO_SLOW:
            delay = self._backoff.compute(0)
        else:
            delay = self._backoff.compute(self._failures)
        if code in (*_AUTH_CLOSES, _CLOSE_CURSOR_RESET, _CLOSE_TOO_SLOW, _CLOSE_SERVICE_RESTART):
            # A server that keeps closing fresh connections with one of these
            # must not be hammered in a tight loop.
            if self._failures > 1:
                delay = max(delay, self._backoff.compute(self._failures))
        if self._degraded:  # the periodic retry failed: back to polling
            logger.info("the WebSocket retry closed (%s: %s); polling on", code, detail)
            self._schedule_probe()
            return
        self._next_delay = delay
        logger.info("stream closed (%s: %s), reconnecting in %.2f s", code, detail, delay)
        await self._emit(ConnectionState.DISCONNECTED)

    async def _reset(self) -> None:
        """A new epoch: old cursors and seqs mean nothing; restart from the head."""
        self._cursor = None
        self._last_seq = None
        self._pending.clear()
        self._more = False
        if self._on_reset is not None:
            await _call(self._on_reset)

    async def _on_frame(self, ws: ClientConnection, raw: str | bytes) -> Notification | None:
        if not isinstance(raw, str):
            logger.warning("ignoring a binary frame")
            return None
        try:
            frame = json.loads(raw)
        except ValueError:
            logger.warning("ignoring a frame that is not JSON: %.80r", raw)
            return None
        if not isinstance(frame, dict):
            return None
        kind = frame.get("type")
        if kind == "notification":
            try:
                entry = Notification.from_json(frame.get("notification"))
            except ProtocolError:
                await self.close()
                raise
            # Replayed entries come before `ready`, whose count includes them.
            return entry if self._accept(entry, counts=self._live) else None
        if kind == "ready":
            self._live = True
            self._failures = 0
            self._auth_rejections = 0
            if self._degraded:
                logger.info("the WebSocket works again; leaving long-poll")
                self._degraded = False
                self._more = self._recount = False
            head = frame.get("cursor")
            if self._last_seq is None and isinstance(head, str):
                self._cursor = head
            unread = frame.get("unread")
            if isinstance(unread, int) and not isinstance(unread, bool):
                self._unread = unread
                self._counted_to = None  # live entries all come after the ready count
            await self._emit(ConnectionState.LIVE)
        elif kind == "ping":
            try:
                await ws.send('{"type":"pong"}')
            except ConnectionClosed:
                pass  # the next recv() reports the close
        elif kind == "state":
            try:
                state = StateFrame.from_json(frame)
            except ProtocolError as exc:
                logger.warning("ignoring a malformed state frame: %s", exc)
                return None
            self._unread = state.unread
            # Entries committed before the change but not yet pushed are in that count.
            self._counted_to = state.seq
            if self._on_state is not None:
                await _call(self._on_state, state)
        elif kind == "error":
            self._error_frame = frame
        # Unknown frame types are ignored: newer servers may add some.
        return None

    def _accept(self, entry: Notification, *, counts: bool) -> bool:
        """Take ``entry`` as the next one yielded unless it was already; ``counts``: it may add to `unread`."""
        # Only "not newer" is dropped: a gap (seq 3 then 5, e.g. an expired
        # entry in between) is normal and is not filled or waited for.
        if self._last_seq is not None and entry.seq <= self._last_seq:
            return False  # already yielded: at-least-once on the wire, or a switch's overlap
        self._last_seq = entry.seq
        self._cursor = entry.cursor
        if (
            counts
            and self._unread is not None
            and entry.read_at is None
            and entry.archived_at is None
            and (self._counted_to is None or entry.seq > self._counted_to)
        ):
            self._unread += 1
        return True

    # --- long-poll mode -------------------------------------------------------

    async def _poll(self) -> None:
        """One request while degraded: the head (and count) when needed, else one page."""
        try:
            if self._cursor is None or self._recount:
                await self._read_head()
            else:
                await self._read_page()
        except _Stopped:
            return
        except CursorResetError:
            await self._reset()
            return
        except BadRequestError as exc:
            if exc.code != "invalid_cursor":
                await self._poll_failed(exc)
                return
            await self._reset()  # as the stream does (4009): not a cursor of this inbox
            return
        except AuthenticationError:
            raise  # terminal; `_call_api` closed the subscriber
        except (TransportError, APIError) as exc:
            await self._poll_failed(exc)
            return
        except ProtocolError:
            await self.close()
            raise
        self._poll_failures = 0
        if self._state is ConnectionState.OFFLINE:
            # The server was down, not just the WebSocket path: it may take upgrades again too.
            self._probe_at = time.monotonic()
        await self._emit(ConnectionState.DEGRADED)

    async def _read_head(self) -> None:
        """Start from the head when there is no cursor; take the count when it is as of our cursor."""
        count = await self._call_api(lambda user: user.unread_and_head())
        self._recount = False
        if self._cursor is None:
            self._cursor = count.cursor  # from now on, never a replay of the whole inbox
        if count.cursor == self._cursor:
            # Everything up to our cursor is in the count; each later entry adds.
            self._unread = count.unread
            self._counted_to = None

    async def _read_page(self) -> None:
        after = self._cursor
        wait = 0 if self._more else self._wait_s()
        page = await self._call_api(lambda user: user.list_notifications(after=after, wait=wait))
        if page.truncated:
            logger.warning("entries after %s were removed by retention before this device read them", after)
        self._pending.extend(page.items)
        self._more = page.has_more
        # Caught up and idle (or no count yet): no state frames here, so read the count again.
        if not page.has_more and (not page.items or self._unread is None):
            self._recount = True

    def _wait_s(self) -> int:
        """The long-poll's wait: ``poll_wait``, cut short so the WebSocket retry is on time."""
        until_probe = math.ceil(self._probe_at - time.monotonic())
        return max(1, min(self._poll_wait, until_probe))

    async def _call_api(self, call: Callable[[AsyncUserClient], Coroutine[Any, Any, _T]]) -> _T:
        """Run one user-API request with a fresh token; on 401 fetch another and retry once."""
        for attempt in (1, 2):
            user = self._user_client(await self._fetch_token())
            try:
                return await self._cancellable(call(user))
            except AuthenticationError:
                if attempt == 2 or not callable(self._token):
                    await self.close()
                    raise
                logger.info("the poll's token was rejected; trying a fresh one")
        raise AssertionError("unreachable")

    def _user_client(self, token: str) -> AsyncUserClient:
        if self._user is None:
            self._user = AsyncUserClient(
                _http_base(self._url), token, timeout=self._open_timeout, transport=self._transport
            )
        else:
            self._user._use_credential(token)
        return self._user

    async def _cancellable(self, request: Coroutine[Any, Any, _T]) -> _T:
        """Await ``request`` as a task that `close` can cancel."""
        task = asyncio.ensure_future(request)
        self._request = task
        try:
            await asyncio.wait({task})
        finally:
            self._request = None
            if not task.done():  # our caller was cancelled
                task.cancel()
        if task.cancelled():
            raise _Stopped
        return task.result()

    async def _poll_failed(self, exc: Exception) -> None:
        self._poll_failures += 1
        delay = self._backoff.compute(self._poll_failures)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            delay = min(self._backoff.cap, max(delay, retry_after))
        self._next_delay = delay
        self._more = False
        logger.info("polling failed (%s), retrying in %.2f s", exc, delay)
        await self._emit(ConnectionState.OFFLINE)

    async def _fetch_token(self) -> str:
        token = self._token
        if callable(token):
            result = token()
            token = await result if inspect.isawaitable(result) else result
        if not isinstance(token, str) or not token:
            raise TypeError(f"the token provider must return a non-empty str, got {token!r}")
        return token

    async def _sleep(self, delay: float) -> None:
        try:
            await asyncio.wait_for(self._stopped.wait(), delay)
        except TimeoutError:
            pass

    async def _emit(self, state: ConnectionState) -> None:
        if self._degraded and state in _PROBE_STATES:
            return  # a WebSocket retry while polling: the app's state is still DEGRADED
        if state is self._state:
            return
        self._state = state
        if self._on_connection_state is not None:
            await _call(self._on_connection_state, state)
