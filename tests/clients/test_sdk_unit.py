"""Unit tests of the Python SDK (clients/python/tidings_client).

HTTP clients run against `httpx.MockTransport`; the `Subscriber` runs against
a scripted fake of the v1 stream protocol served by `websockets` on
127.0.0.1:0. Nothing leaves the machine; every await has a deadline.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
import tidings_client
from hypothesis import given, settings
from hypothesis import strategies as st
from tidings_client import (
    APIError,
    AsyncTidingsClient,
    AsyncUserClient,
    AuthenticationError,
    Backoff,
    BadRequestError,
    ConflictError,
    ConnectionState,
    CursorResetError,
    ForbiddenError,
    NotFoundError,
    Notification,
    PayloadTooLargeError,
    ProtocolError,
    RateLimitedError,
    StateFrame,
    Subscriber,
    TidingsClient,
    TidingsError,
    TransportError,
    UnavailableError,
    UnreadCount,
    UserClient,
    batch_item,
)
from tidings_client._stream import stream_url
from websockets.asyncio.server import ServerConnection, serve

pytestmark = pytest.mark.timeout(15)

T = 3.0  # deadline of any single await, seconds
BASE = "http://tidings.test"
FAST = Backoff(base=0.01, cap=0.05)


def entry(seq: int, epoch: str = "e1", **overrides: Any) -> dict[str, Any]:
    """One inbox entry in wire shape."""
    value: dict[str, Any] = {
        "id": f"n-{epoch}-{seq}",
        "seq": seq,
        "cursor": f"{epoch}:{seq}",
        "type": "comment.created",
        "title": f"title {seq}",
        "body": None,
        "data": {"n": seq},
        "priority": "normal",
        "created_at": "2025-01-02T03:04:05Z",
        "expires_at": None,
        "read_at": None,
        "archived_at": None,
    }
    value.update(overrides)
    return value


# --- exports ------------------------------------------------------------------


def test_exports() -> None:
    exported = tidings_client.__all__
    assert exported == sorted(exported)
    public = {
        name
        for name, value in vars(tidings_client).items()
        if not name.startswith("_") and not isinstance(value, type(tidings_client))
    }
    assert set(exported) == public
    for name in exported:
        value = getattr(tidings_client, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert inspect.getdoc(value), f"{name} has no docstring"


# --- backoff ------------------------------------------------------------------


def test_backoff_bounds_and_cap() -> None:
    backoff = Backoff(base=0.5, cap=8.0, rng=random.Random(1))
    for failures in range(20):
        ceiling = min(8.0, 0.5 * 2**failures)
        assert backoff.ceiling(failures) == ceiling
        for _ in range(50):
            assert 0.0 <= backoff.compute(failures) <= ceiling
    assert backoff.ceiling(10_000) == 8.0  # no OverflowError
    assert backoff.compute(10_000) <= 8.0


def test_backoff_jitter_is_spread_and_seedable() -> None:
    samples = [Backoff(base=1.0, cap=1.0, rng=random.Random(7)).compute(0) for _ in range(3)]
    assert len(set(samples)) == 1  # same seed, same draw
    backoff = Backoff(base=1.0, cap=1.0, rng=random.Random(3))
    draws = [backoff.compute(5) for _ in range(2000)]
    assert len(set(draws)) > 1900
    assert min(draws) < 0.05 and max(draws) > 0.95  # full jitter: the whole range
    assert 0.45 < sum(draws) / len(draws) < 0.55


@pytest.mark.parametrize(("base", "cap"), [(0.0, 1.0), (-1.0, 1.0), (2.0, 1.0)])
def test_backoff_rejects_bad_settings(base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base=base, cap=cap)


def test_backoff_rejects_negative_failures() -> None:
    with pytest.raises(ValueError):
        Backoff().compute(-1)


@settings(database=None)  # leave no .hypothesis/ behind
@given(
    base=st.floats(min_value=1e-3, max_value=10.0),
    extra=st.floats(min_value=0.0, max_value=100.0),
    failures=st.integers(min_value=0, max_value=5000),
)
def test_backoff_never_exceeds_cap(base: float, extra: float, failures: int) -> None:
    backoff = Backoff(base=base, cap=base + extra)
    assert 0.0 <= backoff.compute(failures) <= min(base + extra, base * 2.0 ** min(failures, 64))


# --- HTTP clients -------------------------------------------------------------


Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A MockTransport handler that records requests and plays one answer."""

    def __init__(self, response: httpx.Response | Handler) -> None:
        self.requests: list[httpx.Request] = []
        self._response = response

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if callable(self._response):
            return self._response(request)
        return self._response

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def problem(status: int, code: str, detail: str = "nope", **extra: Any) -> httpx.Response:
    body = {"type": "about:blank", "title": code, "status": status, "detail": detail, "code": code}
    body.update(extra)
    return httpx.Response(
        status,
        content=json.dumps(body).encode(),
        headers={"Content-Type": "application/problem+json"},
    )


def test_send_request_shape() -> None:
    recorder = Recorder(httpx.Response(202, json={"id": "n1", "status": "accepted"}))
    with TidingsClient(BASE, "key-1", transport=httpx.MockTransport(recorder)) as client:
        result = client.send(
            ["u1", "u2"],
            "comment.created",
            "Hello",
            body="text",
            data={"post": 7},
            priority="high",
            idempotency_key="idem-1",
        )
    assert result.id == "n1" and result.status == "accepted" and result.degraded is False
    request = recorder.last
    assert request.method == "POST"
    assert str(request.url) == f"{BASE}/v1/notifications"
    assert request.headers["Authorization"] == "Bearer key-1"
    assert request.headers["Idempotency-Key"] == "idem-1"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("tidings-client-python/")
    assert json.loads(request.content) == {
        "recipients": {"users": ["u1", "u2"]},
        "type": "comment.created",
        "title": "Hello",
        "body": "text",
        "data": {"post": 7},
        "priority": "high",
    }


def test_send_omits_unset_fields_and_reads_degraded() -> None:
    answer = {"id": "n2", "status": "accepted", "degraded": True}
    recorder = Recorder(httpx.Response(202, json=answer))
    with TidingsClient(BASE, "k", transport=httpx.MockTransport(recorder)) as client:
        result = client.send(("u1",), "t", "title")
    assert result.degraded is True
    assert "Idempotency-Key" not in recorder.last.headers
    assert json.loads(recorder.last.content) == {
        "recipients": {"users": ["u1"]},
        "type": "t",
        "title": "title",
    }


def test_send_rejects_a_str_as_users() -> None:
    recorder = Recorder(httpx.Response(202, json={"id": "n", "status": "accepted"}))
    with TidingsClient(BASE, "k", transport=httpx.MockTransport(recorder)) as client:
        with pytest.raises(TypeError):
            client.send("alice", "t", "title")
    assert recorder.requests == []


def test_get_status_quotes_the_id_and_keeps_a_base_path() -> None:
    answer = {
        "id": "a/b",
        "status": "failed",
        "recipients": 3,
        "delivered": 1,
        "reason": "boom",
        "created_at": "2025-01-02T03:04:05+00:00",
    }
    recorder = Recorder(httpx.Response(200, json=answer))
    transport = httpx.MockTransport(recorder)
    with TidingsClient(f"{BASE}/prefix", "k", transport=transport) as client:
        status = client.get("a/b")
    assert recorder.last.url.raw_path == b"/prefix/v1/notifications/a%2Fb"
    assert status.status == "failed" and status.recipients == 3 and status.delivered == 1
    assert status.reason == "boom"
    assert status.created_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (400, "invalid_request", BadRequestError),
        (400, "invalid_cursor", BadRequestError),
        (401, "unauthorized", AuthenticationError),
        (403, "forbidden", ForbiddenError),
        (404, "not_found", NotFoundError),
        (409, "idempotency_conflict", ConflictError),
        (410, "cursor_reset", CursorResetError),
        (413, "payload_too_large", PayloadTooLargeError),
        (429, "rate_limited", RateLimitedError),
        (503, "unavailable", UnavailableError),
        (418, "teapot", APIError),
    ],
)
def test_problem_answers_map_to_errors(
    status: int, code: str, error_class: type[APIError]
) -> None:
    answer = problem(status, code, "human text", field="recipients.users")
    with TidingsClient(BASE, "k", transport=httpx.MockTransport(Recorder(answer))) as client:
        with pytest.raises(error_class) as caught:
            client.send(["u"], "t", "title")
    error = caught.value
    assert type(error) is error_class
    assert isinstance(error, TidingsError)
    assert (error.status, error.code, error.detail) == (status, code, "human text")
    assert error.field == "recipients.users"
    assert "human text" in str(error) and "recipients.users" in str(error)


def test_unavailable_carries_retry_after() -> None:
    answer = problem(503, "unavailable")
    answer.headers["Retry-After"] = "3"
    with UserClient(BASE, "jwt", transport=httpx.MockTransport(Recorder(answer))) as client:
        with pytest.raises(UnavailableError) as caught:
            client.list_notifications()
    assert caught.value.retry_after == 3.0
    assert caught.value.field is None


def test_non_problem_error_body_keeps_status() -> None:
    answer = httpx.Response(502, text="<html>bad gateway</html>")
    with UserClient(BASE, "jwt", transport=httpx.MockTransport(Recorder(answer))) as client:
        with pytest.raises(UnavailableError) as caught:
            client.unread_count()
    assert caught.value.status == 502 and caught.value.code == "http_502"


def test_transport_errors_are_translated() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with TidingsClient(BASE, "k", transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(TransportError) as caught:
            client.get("n1")
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def test_malformed_success_is_a_protocol_error() -> None:
    answer = httpx.Response(202, json={"status": "accepted"})
    with TidingsClient(BASE, "k", transport=httpx.MockTransport(Recorder(answer))) as client:
        with pytest.raises(ProtocolError):
            client.send(["u"], "t", "title")


def test_list_notifications_params_and_page() -> None:
    page = {
        "items": [entry(1), entry(2, read_at="2025-01-03T00:00:00Z")],
        "next_cursor": "e1:2",
        "has_more": True,
        "truncated": False,
    }
    recorder = Recorder(httpx.Response(200, json=page))
    with UserClient(BASE, "jwt-1", transport=httpx.MockTransport(recorder)) as client:
        result = client.list_notifications(after="e1:0", limit=2)
        client.list_notifications()
    first, second = recorder.requests
    assert first.headers["Authorization"] == "Bearer jwt-1"
    assert first.url.path == "/v1/me/notifications"
    assert dict(first.url.params) == {"after": "e1:0", "limit": "2"}
    assert dict(second.url.params) == {}
    assert [item.seq for item in result.items] == [1, 2]
    assert result.next_cursor == "e1:2" and result.has_more and not result.truncated
    assert result.items[0].read_at is None
    assert result.items[1].read_at == datetime(2025, 1, 3, tzinfo=UTC)
    assert result.items[0] == Notification.from_json(entry(1))


def test_unread_count() -> None:
    recorder = Recorder(httpx.Response(200, json={"unread": 4}))
    with UserClient(BASE, "jwt", transport=httpx.MockTransport(recorder)) as client:
        assert client.unread_count() == 4
    assert recorder.last.url.path == "/v1/me/unread-count"


def test_unread_and_head() -> None:
    recorder = Recorder(httpx.Response(200, json={"unread": 4, "cursor": "e1:9"}))
    with UserClient(BASE, "jwt", transport=httpx.MockTransport(recorder)) as client:
        assert client.unread_count() == 4  # still an int
        assert client.unread_and_head() == UnreadCount(unread=4, cursor="e1:9")
    assert recorder.last.url.path == "/v1/me/unread-count"
    with UserClient(BASE, "jwt", transport=httpx.MockTransport(
            Recorder(httpx.Response(200, json={"unread": 4})))) as client:
        with pytest.raises(ProtocolError):
            client.unread_and_head()  # an older server without the head


@pytest.mark.asyncio
async def test_async_clients() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/notifications":
            return httpx.Response(202, json={"id": "n1", "status": "accepted"})
        if request.url.path == "/v1/notifications/n1":
            return problem(404, "not_found")
        if request.url.path == "/v1/me/unread-count":
            return httpx.Response(200, json={"unread": 0, "cursor": "e1:9"})
        return httpx.Response(200, json={"items": [], "next_cursor": "e1:9", "has_more": False,
                                         "truncated": False})

    recorder = Recorder(answer)
    transport = httpx.MockTransport(recorder)
    async with AsyncTidingsClient(BASE, "k", transport=transport) as producer:
        result = await asyncio.wait_for(
            producer.send(["u"], "t", "title", idempotency_key="i"), T
        )
        assert result.id == "n1"
        with pytest.raises(NotFoundError):
            await asyncio.wait_for(producer.get("n1"), T)
    async with AsyncUserClient(BASE, "jwt", transport=transport) as user:
        page = await asyncio.wait_for(user.list_notifications(after="e1:9"), T)
        assert page.items == [] and page.next_cursor == "e1:9"
        assert await asyncio.wait_for(user.unread_count(), T) == 0
        assert await asyncio.wait_for(user.unread_and_head(), T) == UnreadCount(0, "e1:9")
    assert recorder.requests[0].headers["Idempotency-Key"] == "i"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with AsyncUserClient(BASE, "jwt", transport=httpx.MockTransport(refuse)) as user:
        with pytest.raises(TransportError):
            await asyncio.wait_for(user.unread_count(), T)


# --- Subscriber against a fake stream ------------------------------------------


Script = Callable[[ServerConnection, dict[str, Any]], Awaitable[None]]


class FakeStream:
    """A scripted v1 stream: connection i runs ``scripts[i]`` (the last one repeats).

    While ``refusal`` is set to ``(status, body)`` every handshake is refused with
    it, as by a proxy that blocks WebSockets; ``handshakes`` counts the attempts.
    """

    def __init__(self, scripts: list[Script]) -> None:
        self.scripts = scripts
        self.auths: list[dict[str, Any]] = []
        self.base_url = ""
        self.refusal: tuple[int, str] | None = None
        self.handshakes = 0

    def process_request(self, connection: ServerConnection, request: Any) -> Any:
        self.handshakes += 1
        if self.refusal is None:
            return None
        return connection.respond(*self.refusal)

    async def handler(self, ws: ServerConnection) -> None:
        auth = json.loads(await asyncio.wait_for(ws.recv(), T))
        self.auths.append(auth)
        script = self.scripts[min(len(self.auths), len(self.scripts)) - 1]
        await script(ws, auth)


@asynccontextmanager
async def fake_stream(*scripts: Script) -> AsyncIterator[FakeStream]:
    fake = FakeStream(list(scripts))
    async with serve(fake.handler, "127.0.0.1", 0, process_request=fake.process_request) as server:
        port = server.sockets[0].getsockname()[1]
        fake.base_url = f"http://127.0.0.1:{port}"
        yield fake


async def say(ws: ServerConnection, *frames: dict[str, Any]) -> None:
    for frame in frames:
        await ws.send(json.dumps(frame))


def ready(cursor: str, unread: int = 0) -> dict[str, Any]:
    return {"type": "ready", "cursor": cursor, "unread": unread}


def note(seq: int, epoch: str = "e1") -> dict[str, Any]:
    return {"type": "notification", "notification": entry(seq, epoch)}


async def stay_open(ws: ServerConnection, auth: dict[str, Any] | None = None) -> None:
    await ws.wait_closed()


async def take(subscriber: Subscriber, count: int) -> list[Notification]:
    return [await asyncio.wait_for(anext(subscriber), T) for _ in range(count)]


class RecordingBackoff(Backoff):
    """A fast backoff that remembers the failure counts it was asked about."""

    def __init__(self) -> None:
        super().__init__(base=0.01, cap=0.05)
        self.calls: list[int] = []

    def compute(self, failures: int) -> float:
        self.calls.append(failures)
        return super().compute(failures)


def test_stream_url() -> None:
    assert stream_url("http://h:8000") == "ws://h:8000/v1/stream"
    assert stream_url("https://h/") == "wss://h/v1/stream"
    assert stream_url("https://h/base/") == "wss://h/base/v1/stream"
    with pytest.raises(ValueError):
        stream_url("ftp://h")
    with pytest.raises(ValueError):
        stream_url("not a url")


@pytest.mark.asyncio
async def test_resume_sends_the_last_cursor_after_a_drop() -> None:
    async def first(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e1:0"), note(1), note(2), {"type": "ping"})
        # The pong proves the client read entries 1 and 2; then die without a close frame.
        assert json.loads(await asyncio.wait_for(ws.recv(), T)) == {"type": "pong"}
        ws.transport.abort()

    async def second(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, note(2), ready("e1:3"), note(3))  # replay overlaps: at-least-once
        await stay_open(ws)

    backoff = RecordingBackoff()
    async with fake_stream(first, second) as fake:
        async with Subscriber(fake.base_url, "jwt", backoff=backoff) as subscriber:
            items = await take(subscriber, 3)
            assert [item.seq for item in items] == [1, 2, 3]
            assert subscriber.cursor == "e1:3" and subscriber.last_seq == 3
    assert fake.auths[0] == {"type": "auth", "token": "jwt"}
    assert fake.auths[1] == {"type": "auth", "token": "jwt", "cursor": "e1:2"}
    assert backoff.calls == [0]  # a drop after a healthy session: the first step


@pytest.mark.asyncio
async def test_duplicates_and_old_seqs_are_dropped() -> None:
    async def script(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, note(5), note(5), note(6), note(4), note(6), note(7))
        await stay_open(ws)

    async with fake_stream(script) as fake:
        async with Subscriber(fake.base_url, "jwt", cursor="e1:4", backoff=FAST) as subscriber:
            assert [item.seq for item in await take(subscriber, 3)] == [5, 6, 7]
            assert subscriber.cursor == "e1:7"
    assert fake.auths == [{"type": "auth", "token": "jwt", "cursor": "e1:4"}]


@pytest.mark.asyncio
async def test_cursor_reset_restarts_from_the_head_and_calls_on_reset() -> None:
    async def first(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, note(8), note(9))
        await say(ws, {"type": "error", "code": "cursor_reset", "message": "epoch changed"})
        await ws.close(4009, "cursor reset")

    async def second(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e2:0", unread=1), note(1, "e2"))
        await stay_open(ws)

    resets: list[int | None] = []
    subscriber: Subscriber

    async def on_reset() -> None:
        resets.append(subscriber.last_seq)

    async with fake_stream(first, second) as fake:
        subscriber = Subscriber(fake.base_url, "jwt", cursor="e1:7", on_reset=on_reset,
                                backoff=FAST)
        async with subscriber:
            first_two = await take(subscriber, 2)
            assert [item.seq for item in first_two] == [8, 9]
            (fresh,) = await take(subscriber, 1)
            assert (fresh.seq, fresh.cursor) == (1, "e2:1")  # not dropped as "old"
            # ready's 1, plus the new (unread) live entry.
            assert subscriber.cursor == "e2:1" and subscriber.unread == 2
    assert resets == [None]  # called once, after own state was reset
    assert fake.auths[0]["cursor"] == "e1:7"
    assert "cursor" not in fake.auths[1]


@pytest.mark.asyncio
async def test_policy_close_raises_authentication_error() -> None:
    async def reject(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, {"type": "error", "code": "unauthorized", "message": "bad token"})
        await ws.close(1008, "unauthorized")

    states: list[ConnectionState] = []
    async with fake_stream(reject) as fake:
        subscriber = Subscriber(fake.base_url, "bad", backoff=FAST,
                                on_connection_state=states.append)
        with pytest.raises(AuthenticationError) as caught:
            await take(subscriber, 1)
        assert subscriber.closed
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(subscriber), T)
    error = caught.value
    assert (error.close_code, error.code, error.detail, error.status) == (
        1008, "unauthorized", "bad token", 401
    )
    assert len(fake.auths) == 1
    assert states[-1] is ConnectionState.CLOSED


@pytest.mark.asyncio
async def test_token_expired_without_a_provider_is_terminal() -> None:
    async def expire(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e1:0"))
        await ws.close(4001, "token expired")

    async with fake_stream(expire) as fake:
        async with Subscriber(fake.base_url, "jwt", backoff=FAST) as subscriber:
            with pytest.raises(AuthenticationError) as caught:
                await take(subscriber, 1)
    assert caught.value.close_code == 4001 and caught.value.code == "token_expired"


@pytest.mark.asyncio
async def test_token_provider_is_called_on_every_connect() -> None:
    async def first(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e1:0"), note(1))
        await ws.close(4001, "token expired")

    async def later(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e1:1"), note(2))
        await ws.close(1012, "restart")

    tokens = iter(["t1", "t2", "t3", "t4"])
    async with fake_stream(first, later) as fake:
        async with Subscriber(fake.base_url, lambda: next(tokens), backoff=FAST) as subscriber:
            assert [item.seq for item in await take(subscriber, 2)] == [1, 2]
            await asyncio.sleep(0)
    assert [auth["token"] for auth in fake.auths[:2]] == ["t1", "t2"]
    assert fake.auths[1]["cursor"] == "e1:1"


@pytest.mark.asyncio
async def test_async_provider_whose_fresh_token_is_rejected_is_terminal() -> None:
    async def reject(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await ws.close(1008, "bad token")

    calls: list[str] = []

    async def provider() -> str:
        calls.append(f"t{len(calls) + 1}")
        return calls[-1]

    async with fake_stream(reject) as fake:
        async with Subscriber(fake.base_url, provider, backoff=FAST) as subscriber:
            with pytest.raises(AuthenticationError) as caught:
                await take(subscriber, 1)
    assert calls == ["t1", "t2"]
    assert [auth["token"] for auth in fake.auths] == ["t1", "t2"]
    assert caught.value.detail == "bad token"


@pytest.mark.asyncio
async def test_silence_past_the_ping_deadline_reconnects() -> None:
    async def silent(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e1:0"), note(1))
        await stay_open(ws)  # then nothing, not even a ping

    async def healthy(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e1:1"), note(2))
        await stay_open(ws)

    async with fake_stream(silent, healthy) as fake:
        subscriber = Subscriber(fake.base_url, "jwt", backoff=FAST, ping_interval=0.05)
        assert subscriber._silence_timeout == pytest.approx(0.1)  # dead "within two intervals"
        async with subscriber:
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert [item.seq for item in await take(subscriber, 2)] == [1, 2]
            assert loop.time() - started < 2.0
    assert fake.auths[1]["cursor"] == "e1:1"


@pytest.mark.asyncio
async def test_connection_states_state_frames_and_restart() -> None:
    async def first(ws: ServerConnection, auth: dict[str, Any]) -> None:
        state = {"type": "state", "action": "read", "ids": ["n-e1-1"],
                 "at": "2025-01-03T00:00:00Z", "unread": 1, "cursor": "e1:0"}
        await say(ws, ready("e1:0", unread=2), {"type": "surprise"}, state, note(1))
        await ws.close(1012, "service restart")

    async def second(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e1:1"), note(2))
        await stay_open(ws)

    states: list[ConnectionState] = []
    frames: list[StateFrame] = []
    async with fake_stream(first, second) as fake:
        subscriber = Subscriber(fake.base_url, "jwt", backoff=FAST, on_state=frames.append,
                                on_connection_state=states.append)
        async with subscriber:
            (one,) = await take(subscriber, 1)
            # ready said 2, the state frame 1, then entry 1 (unread, live) adds one.
            assert subscriber.unread == 2 and frames[0].ids == ["n-e1-1"]
            (two,) = await take(subscriber, 1)
    assert (one.seq, two.seq) == (1, 2)
    S = ConnectionState
    assert states == [S.CONNECTING, S.CONNECTED, S.LIVE, S.DISCONNECTED,
                      S.CONNECTING, S.CONNECTED, S.LIVE, S.CLOSED]


@pytest.mark.asyncio
async def test_cursor_is_the_head_before_any_entry() -> None:
    async def script(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e1:41"), {"type": "ping"})
        await stay_open(ws)

    async with fake_stream(script) as fake:
        async with Subscriber(fake.base_url, "jwt", backoff=FAST) as subscriber:
            pending = asyncio.ensure_future(anext(subscriber))
            for _ in range(100):
                if subscriber.cursor is not None:
                    break
                await asyncio.sleep(0.01)
            assert subscriber.cursor == "e1:41"
            await subscriber.close()  # ends the pending iteration
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(pending, T)


@pytest.mark.asyncio
async def test_malformed_entry_is_a_protocol_error() -> None:
    async def script(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, {"type": "notification", "notification": {"id": "x", "seq": "one"}})
        await stay_open(ws)

    async with fake_stream(script) as fake:
        async with Subscriber(fake.base_url, "jwt", backoff=FAST) as subscriber:
            with pytest.raises(ProtocolError):
                await take(subscriber, 1)
            assert subscriber.closed


@pytest.mark.asyncio
async def test_refused_connections_back_off_with_growing_failures() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on `port` now: every attempt is refused.
    backoff = RecordingBackoff()
    subscriber = Subscriber(f"http://127.0.0.1:{port}", "jwt", backoff=backoff)
    pending = asyncio.ensure_future(anext(subscriber))
    for _ in range(300):
        if len(backoff.calls) >= 3:
            break
        await asyncio.sleep(0.01)
    await subscriber.close()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, T)
    assert backoff.calls[:3] == [1, 2, 3]


def test_subscriber_validates_arguments() -> None:
    with pytest.raises(ValueError):
        Subscriber("ftp://h", "jwt")
    with pytest.raises(ValueError):
        Subscriber("http://h", "jwt", ping_interval=0)
    with pytest.raises(TypeError):
        Subscriber("http://h", "")


# --- topics, scheduling, cancel, read state (HTTP) -----------------------------


STATUS = {
    "id": "n1",
    "status": "scheduled",
    "recipients": 0,
    "delivered": 0,
    "reason": None,
    "created_at": "2025-01-02T03:04:05+00:00",
    "topic": "news",
    "send_at": "2026-01-05T09:00:00+00:00",
}


def test_send_to_a_topic_with_ttl_and_send_at() -> None:
    recorder = Recorder(httpx.Response(202, json={"id": "n1", "status": "scheduled"}))
    when = datetime(2026, 1, 5, 10, 30, tzinfo=timezone(timedelta(hours=1, minutes=30)))
    with TidingsClient(BASE, "k", transport=httpx.MockTransport(recorder)) as client:
        result = client.send(None, "digest", "Your week", topic="news", ttl_seconds=3600, send_at=when)
    assert result.status == "scheduled"
    assert json.loads(recorder.last.content) == {
        "recipients": {"topic": "news"},
        "type": "digest",
        "title": "Your week",
        "ttl_seconds": 3600,
        "send_at": "2026-01-05T10:30:00+01:30",  # the offset given is kept: RFC 3339
    }


def test_send_needs_exactly_one_of_users_and_topic() -> None:
    recorder = Recorder(httpx.Response(202, json={"id": "n", "status": "accepted"}))
    with TidingsClient(BASE, "k", transport=httpx.MockTransport(recorder)) as client:
        with pytest.raises(ValueError, match="exactly one"):
            client.send(None, "t", "title")
        with pytest.raises(ValueError, match="exactly one"):
            client.send(["u"], "t", "title", topic="news")
    assert recorder.requests == []


@pytest.mark.parametrize(
    "naive",
    [datetime(2026, 1, 5, 9, 0), datetime.now()],  # noqa: DTZ001, DTZ005 - naive on purpose
)
def test_a_naive_send_at_is_refused_before_any_request(naive: datetime) -> None:
    recorder = Recorder(httpx.Response(202, json={"id": "n", "status": "accepted"}))
    with TidingsClient(BASE, "k", transport=httpx.MockTransport(recorder)) as client:
        with pytest.raises(ValueError, match="timezone-aware"):
            client.send(["u"], "t", "title", send_at=naive)
        with pytest.raises(ValueError, match="timezone-aware"):
            client.send_batch([{"recipients": {"users": ["u"]}, "type": "t", "title": "x",
                                "send_at": naive}])
        with pytest.raises(ValueError, match="timezone-aware"):
            batch_item("t", "title", users=["u"], send_at=naive)
        with pytest.raises(TypeError):
            client.send(["u"], "t", "title", send_at="2026-01-05T09:00:00Z")  # type: ignore[arg-type]
    assert recorder.requests == []


def test_batch_items_with_topic_ttl_and_send_at() -> None:
    answer = {"results": [{"index": 0, "id": "a", "status": "scheduled"},
                          {"index": 1, "id": "b", "status": "accepted"},
                          {"index": 2, "id": "c", "status": "accepted"}]}
    recorder = Recorder(httpx.Response(202, json=answer))
    when = datetime(2026, 1, 5, 9, tzinfo=UTC)
    items = [
        batch_item("digest", "Weekly", topic="weekly", send_at=when, idempotency_key="w-1"),
        batch_item("order", "Shipped", users=("alice",), ttl_seconds=60, priority="high"),
        {"recipients": {"topic": "news"}, "type": "t", "title": "raw", "send_at": when},
    ]
    with TidingsClient(BASE, "k", transport=httpx.MockTransport(recorder)) as client:
        results = client.send_batch(items)
    assert [r.status for r in results] == ["scheduled", "accepted", "accepted"]
    sent = json.loads(recorder.last.content)["notifications"]
    assert sent[0] == {"recipients": {"topic": "weekly"}, "type": "digest", "title": "Weekly",
                       "send_at": "2026-01-05T09:00:00+00:00", "idempotency_key": "w-1"}
    assert sent[1] == {"recipients": {"users": ["alice"]}, "type": "order", "title": "Shipped",
                       "priority": "high", "ttl_seconds": 60}
    assert sent[2]["send_at"] == "2026-01-05T09:00:00+00:00"
    assert isinstance(items[2]["send_at"], datetime)  # the caller's mapping is not changed
    with pytest.raises(ValueError):
        batch_item("t", "title")
    with pytest.raises(TypeError):
        batch_item("t", "title", users="alice")


def test_status_carries_topic_and_send_at() -> None:
    recorder = Recorder(httpx.Response(200, json=STATUS))
    with TidingsClient(BASE, "k", transport=httpx.MockTransport(recorder)) as client:
        status = client.get("n1")
    assert status.topic == "news"
    assert status.send_at == datetime(2026, 1, 5, 9, tzinfo=UTC)
    plain = {key: value for key, value in STATUS.items() if key not in ("topic", "send_at")}
    older = tidings_client.NotificationStatus.from_json(plain)  # an older server: both absent
    assert older.topic is None and older.send_at is None
    with pytest.raises(ProtocolError):
        tidings_client.NotificationStatus.from_json(STATUS | {"send_at": "soon"})


def test_cancel_request_shape_and_errors() -> None:
    cancelled = STATUS | {"status": "cancelled", "reason": "cancelled by the producer"}
    recorder = Recorder(httpx.Response(200, json=cancelled))
    with TidingsClient(BASE, "k", transport=httpx.MockTransport(recorder)) as client:
        status = client.cancel("n1")
    assert (recorder.last.method, recorder.last.url.path) == ("DELETE", "/v1/notifications/n1")
    assert status.status == "cancelled" and status.reason == "cancelled by the producer"

    for answer, error_class, code in (
        (problem(409, "not_cancellable", "it is delivered"), ConflictError, "not_cancellable"),
        (problem(404, "not_found"), NotFoundError, "not_found"),
    ):
        transport = httpx.MockTransport(Recorder(answer))
        with TidingsClient(BASE, "k", transport=transport) as client:
            with pytest.raises(error_class) as caught:
                client.cancel("n1")
        assert caught.value.code == code and caught.value.status in (404, 409)


def test_topic_methods_request_shape() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.method in ("PUT", "DELETE"):
            return httpx.Response(204)
        if request.method == "POST":
            return httpx.Response(200, json={"added": 2})
        return httpx.Response(200, json={"items": ["a", "b"], "has_more": True, "next_after": "b"})

    recorder = Recorder(answer)
    with TidingsClient(BASE, "k", transport=httpx.MockTransport(recorder)) as client:
        assert client.subscribe("news", "org:al|ice+1=x") is None
        assert client.subscribe_many("news", ["a", "b", "c"]) == 2
        assert client.unsubscribe("news", "bob") is None
        page = client.subscribers("news", after="a", limit=2)
        client.subscribers("news")
        topics = client.topics_of("alice", limit=10)
        client.subscribe("..", "u")  # a legal topic name, and no dot segment
        with pytest.raises(TypeError):
            client.subscribe_many("news", "alice")
    put, post, delete, listed, default, of_user, dots = recorder.requests
    assert (put.method, put.url.raw_path) == ("PUT", b"/v1/topics/news/subscribers/org%3Aal%7Cice%2B1%3Dx")
    assert (post.method, post.url.path) == ("POST", "/v1/topics/news/subscribers")
    assert json.loads(post.content) == {"users": ["a", "b", "c"]}
    assert (delete.method, delete.url.path) == ("DELETE", "/v1/topics/news/subscribers/bob")
    assert (listed.method, listed.url.path) == ("GET", "/v1/topics/news/subscribers")
    assert dict(listed.url.params) == {"after": "a", "limit": "2"}
    assert dict(default.url.params) == {"limit": "50"}
    assert of_user.url.path == "/v1/users/alice/topics" and dict(of_user.url.params) == {"limit": "10"}
    assert dots.url.raw_path == b"/v1/topics/%2E%2E/subscribers/u"
    assert page == tidings_client.NamePage(items=["a", "b"], has_more=True, next_after="b")
    assert topics.items == ["a", "b"]


def test_iter_subscribers_walks_every_page() -> None:
    names = [f"u{i}" for i in range(5)]

    def answer(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after")
        limit = int(request.url.params["limit"])
        start = names.index(after) + 1 if after else 0
        items = names[start : start + limit]
        more = start + limit < len(names)
        return httpx.Response(200, json={"items": items, "has_more": more,
                                         "next_after": items[-1] if more else None})

    recorder = Recorder(answer)
    with TidingsClient(BASE, "k", transport=httpx.MockTransport(recorder)) as client:
        assert list(client.iter_subscribers("news", page_size=2)) == names
        assert list(client.iter_topics_of("u1", page_size=5)) == names
    assert [r.url.params.get("after") for r in recorder.requests] == [None, "u1", "u3", None]


@pytest.mark.parametrize(
    "body",
    [{"items": "a", "has_more": False, "next_after": None},
     {"items": [1], "has_more": False, "next_after": None},
     {"has_more": False}],
)
def test_malformed_name_page_is_a_protocol_error(body: dict[str, Any]) -> None:
    transport = httpx.MockTransport(Recorder(httpx.Response(200, json=body)))
    with TidingsClient(BASE, "k", transport=transport) as client:
        with pytest.raises(ProtocolError):
            client.subscribers("news")


def test_list_notifications_filters() -> None:
    page = {"items": [], "next_cursor": "e1:0", "has_more": False, "truncated": False}
    recorder = Recorder(httpx.Response(200, json=page))
    with UserClient(BASE, "jwt", transport=httpx.MockTransport(recorder)) as client:
        client.list_notifications(unread=True, archived=False)
        client.list_notifications(after="e1:0", unread=False, archived=True)
        client.list_notifications(before="e1:9")
    first, second, third = (dict(r.url.params) for r in recorder.requests)
    assert first == {"unread": "true", "archived": "false"}
    assert second == {"after": "e1:0", "unread": "false", "archived": "true"}
    assert third == {"before": "e1:9"}


@pytest.mark.parametrize("action", ["read", "unread", "archive", "unarchive"])
def test_state_changes_request_shape(action: str) -> None:
    recorder = Recorder(httpx.Response(200, json={"updated": 2, "unread": 5, "cursor": "e1:9"}))
    method = {"read": "mark_read", "unread": "mark_unread"}.get(action, action)
    with UserClient(BASE, "jwt", transport=httpx.MockTransport(recorder)) as client:
        change = getattr(client, method)(ids=["n1", "n2"])
        getattr(client, method)(up_to="e1:7")
        with pytest.raises(ValueError, match="exactly one"):
            getattr(client, method)()
        with pytest.raises(ValueError, match="exactly one"):
            getattr(client, method)(ids=["n1"], up_to="e1:7")
        with pytest.raises(TypeError):
            getattr(client, method)(ids="n1")
    assert change == tidings_client.StateChange(updated=2, unread=5, cursor="e1:9")
    by_ids, by_cursor = recorder.requests
    assert (by_ids.method, by_ids.url.path) == ("POST", f"/v1/me/notifications/{action}")
    assert json.loads(by_ids.content) == {"ids": ["n1", "n2"]}
    assert json.loads(by_cursor.content) == {"up_to": "e1:7"}


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [(400, "invalid_request", BadRequestError), (400, "invalid_cursor", BadRequestError),
     (410, "cursor_reset", CursorResetError)],
)
def test_state_change_errors(status: int, code: str, error_class: type[APIError]) -> None:
    transport = httpx.MockTransport(Recorder(problem(status, code, field="up_to")))
    with UserClient(BASE, "jwt", transport=transport) as client:
        with pytest.raises(error_class) as caught:
            client.mark_read(up_to="e1:7")
    assert (caught.value.status, caught.value.code, caught.value.field) == (status, code, "up_to")
    with pytest.raises(ProtocolError):
        tidings_client.StateChange.from_json({"updated": 1, "unread": True, "cursor": "e1:1"})


@pytest.mark.asyncio
async def test_async_clients_new_methods() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        path, method = request.url.path, request.method
        if path == "/v1/notifications":
            return httpx.Response(202, json={"id": "n1", "status": "scheduled"})
        if path == "/v1/notifications/n1" and method == "DELETE":
            return httpx.Response(200, json=STATUS | {"status": "cancelled"})
        if path == "/v1/notifications/n2":
            return problem(409, "not_cancellable")
        if path.startswith("/v1/topics/") and method in ("PUT", "DELETE"):
            return httpx.Response(204)
        if path.startswith("/v1/topics/") and method == "POST":
            return httpx.Response(200, json={"added": 3})
        if path.startswith(("/v1/topics/", "/v1/users/")):
            after = request.url.params.get("after")
            if after is None:
                return httpx.Response(200, json={"items": ["a"], "has_more": True, "next_after": "a"})
            return httpx.Response(200, json={"items": ["b"], "has_more": False, "next_after": None})
        if path.startswith("/v1/me/notifications/"):
            return httpx.Response(200, json={"updated": 1, "unread": 0, "cursor": "e1:3"})
        return httpx.Response(200, json={"items": [entry(3, archived_at="2025-01-03T00:00:00Z")],
                                         "next_cursor": "e1:3", "has_more": False, "truncated": False})

    recorder = Recorder(answer)
    transport = httpx.MockTransport(recorder)
    when = datetime(2026, 1, 5, 9, tzinfo=UTC)
    async with AsyncTidingsClient(BASE, "k", transport=transport) as producer:
        sent = await asyncio.wait_for(producer.send(None, "t", "x", topic="news", send_at=when), T)
        assert sent.status == "scheduled"
        assert json.loads(recorder.last.content)["send_at"] == "2026-01-05T09:00:00+00:00"
        assert (await asyncio.wait_for(producer.cancel("n1"), T)).status == "cancelled"
        with pytest.raises(ConflictError) as caught:
            await asyncio.wait_for(producer.cancel("n2"), T)
        assert caught.value.code == "not_cancellable"
        await asyncio.wait_for(producer.subscribe("news", "a"), T)
        assert await asyncio.wait_for(producer.subscribe_many("news", ["a", "b", "c"]), T) == 3
        await asyncio.wait_for(producer.unsubscribe("news", "a"), T)
        assert (await asyncio.wait_for(producer.subscribers("news", limit=1), T)).next_after == "a"
        assert (await asyncio.wait_for(producer.topics_of("a"), T)).items == ["a"]
        assert [name async for name in producer.iter_subscribers("news")] == ["a", "b"]
        assert [name async for name in producer.iter_topics_of("a")] == ["a", "b"]
        with pytest.raises(ValueError):
            await producer.send(["u"], "t", "x", send_at=datetime(2026, 1, 5))  # noqa: DTZ001
    async with AsyncUserClient(BASE, "jwt", transport=transport) as user:
        page = await asyncio.wait_for(user.list_notifications(archived=True, unread=True), T)
        assert page.items[0].archived_at == datetime(2025, 1, 3, tzinfo=UTC)
        assert dict(recorder.last.url.params) == {"unread": "true", "archived": "true"}
        for method in (user.mark_read, user.mark_unread, user.archive, user.unarchive):
            change = await asyncio.wait_for(method(up_to="e1:3"), T)
            assert change.cursor == "e1:3"
        assert [r.url.path for r in recorder.requests[-4:]] == [
            "/v1/me/notifications/read", "/v1/me/notifications/unread",
            "/v1/me/notifications/archive", "/v1/me/notifications/unarchive",
        ]
        with pytest.raises(ValueError):
            await user.archive()


# --- Subscriber: state frames, unread, mark_read, seq gaps -----------------------


def state(unread: int, cursor: str = "e1:0", action: str = "read", **fields: Any) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "state", "action": action}
    frame.update(fields or {"ids": ["n-e1-1"]})
    frame |= {"at": "2025-01-03T00:00:00+00:00", "unread": unread, "cursor": cursor}
    return frame


def note_with(seq: int, **overrides: Any) -> dict[str, Any]:
    return {"type": "notification", "notification": entry(seq, **overrides)}


@pytest.mark.asyncio
async def test_state_frames_set_unread_and_reach_on_state() -> None:
    async def script(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e1:0", unread=3), note(1),
                  state(1, "e1:1", up_to="e1:1"),
                  {"type": "state", "action": "read"},  # malformed: skipped, not fatal
                  note_with(2, read_at="2025-01-03T00:00:00Z"),  # read on arrival: not counted
                  note_with(3, archived_at="2025-01-03T00:00:00Z"),  # archived: not counted
                  note(4),
                  state(0, "e1:4", action="archive", ids=["n-e1-4"]))
        await stay_open(ws)

    frames: list[StateFrame] = []
    unread_seen: list[int | None] = []
    subscriber: Subscriber

    async def on_state(frame: StateFrame) -> None:  # async callbacks are awaited
        frames.append(frame)
        unread_seen.append(subscriber.unread)

    async with fake_stream(script) as fake:
        subscriber = Subscriber(fake.base_url, "jwt", backoff=FAST, on_state=on_state)
        async with subscriber:
            assert subscriber.unread is None
            await take(subscriber, 1)
            assert subscriber.unread == 4  # ready's 3 plus a new unread live entry
            await take(subscriber, 1)
            assert subscriber.unread == 1  # the state frame's count overrides
            await take(subscriber, 2)
            assert subscriber.unread == 2
            pending = asyncio.ensure_future(anext(subscriber))
            for _ in range(200):
                if len(frames) == 2:
                    break
                await asyncio.sleep(0.01)
            assert subscriber.unread == 0
            await subscriber.close()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(pending, T)
    first, second = frames
    assert first == StateFrame(action="read", unread=1, cursor="e1:1", ids=None, up_to="e1:1",
                               at=datetime(2025, 1, 3, tzinfo=UTC))
    assert (second.action, second.ids, second.up_to, second.unread) == ("archive", ["n-e1-4"], None, 0)
    assert unread_seen == [1, 0]  # already updated when on_state runs
    assert len(fake.auths) == 1


@pytest.mark.asyncio
async def test_replayed_entries_do_not_count_and_ready_overrides() -> None:
    async def first(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e1:0", unread=0), note(1), note(2))
        await ws.close(1012, "restart")

    async def second(ws: ServerConnection, auth: dict[str, Any]) -> None:
        # A replay (before ready) and a state frame during it; ready's count is the truth.
        await say(ws, note(3), state(9, "e1:3"), note(4), ready("e1:4", unread=5), note(5))
        await stay_open(ws)

    async with fake_stream(first, second) as fake:
        async with Subscriber(fake.base_url, "jwt", backoff=FAST) as subscriber:
            await take(subscriber, 2)
            assert subscriber.unread == 2
            await take(subscriber, 1)  # entry 3, replayed: no local count
            assert subscriber.unread == 2
            await take(subscriber, 1)  # after the state frame
            assert subscriber.unread == 9
            await take(subscriber, 1)  # ready said 5, then live entry 5
            assert subscriber.unread == 6


@pytest.mark.asyncio
async def test_seq_gaps_are_not_errors_and_do_not_reconnect() -> None:
    async def first(ws: ServerConnection, auth: dict[str, Any]) -> None:
        # Seqs 2, 4, 6-8 expired (ttl_seconds): the server never sends them.
        await say(ws, ready("e1:0"), note(1), note(3), note(5), note(3), note(9))
        await ws.close(1012, "restart")

    async def second(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, note(9), ready("e1:12"), note(12), note(11), note(13))
        await stay_open(ws)

    states: list[ConnectionState] = []
    async with fake_stream(first, second) as fake:
        async with Subscriber(fake.base_url, "jwt", backoff=FAST,
                              on_connection_state=states.append) as subscriber:
            seqs = [item.seq for item in await take(subscriber, 6)]
            assert subscriber.cursor == "e1:13"
    assert seqs == [1, 3, 5, 9, 12, 13]
    assert len(fake.auths) == 2  # only the scripted restart, no reconnect for a gap
    assert fake.auths[1]["cursor"] == "e1:9"
    assert states.count(ConnectionState.DISCONNECTED) == 1


@pytest.mark.asyncio
async def test_mark_read_sends_read_frames_and_the_state_answer_arrives() -> None:
    received: list[dict[str, Any]] = []

    async def script(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e1:2", unread=2))
        async for raw in ws:
            frame = json.loads(raw)
            received.append(frame)
            if frame.get("type") == "read":
                unread = 1 if "ids" in frame else 0
                await say(ws, state(unread, "e1:2", **{k: v for k, v in frame.items() if k != "type"}))

    frames: list[StateFrame] = []
    async with fake_stream(script) as fake:
        subscriber = Subscriber(fake.base_url, "jwt", backoff=FAST, on_state=frames.append)
        assert not subscriber.connected
        assert await subscriber.mark_read(ids=["n-e1-1"]) is False  # not connected: nothing queued
        with pytest.raises(ValueError):
            await subscriber.mark_read()
        with pytest.raises(ValueError):
            await subscriber.mark_read(ids=["a"], up_to="e1:1")
        with pytest.raises(TypeError):
            await subscriber.mark_read(ids="n-e1-1")
        async with subscriber:
            pending = asyncio.ensure_future(anext(subscriber))
            for _ in range(200):
                if subscriber.unread is not None:
                    break
                await asyncio.sleep(0.01)
            assert subscriber.connected and subscriber.unread == 2
            assert await asyncio.wait_for(subscriber.mark_read(ids=["n-e1-1"]), T) is True
            assert await asyncio.wait_for(subscriber.mark_read(up_to="e1:2"), T) is True
            for _ in range(200):
                if len(frames) == 2:
                    break
                await asyncio.sleep(0.01)
            assert [(f.ids, f.up_to, f.unread) for f in frames] == [
                (["n-e1-1"], None, 1), (None, "e1:2", 0)
            ]
            assert subscriber.unread == 0
            await subscriber.close()
            with pytest.raises(StopAsyncIteration):
                await asyncio.wait_for(pending, T)
        assert await subscriber.mark_read(up_to="e1:2") is False  # closed
    assert received == [{"type": "read", "ids": ["n-e1-1"]}, {"type": "read", "up_to": "e1:2"}]


@pytest.mark.asyncio
async def test_entries_already_in_a_state_frames_count_are_not_added_again() -> None:
    """A change is counted as of the head (seq 3): entries up to it that arrive after the frame are
    in the count already; only later ones are added."""
    async def script(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e1:0", unread=0), note(1),
                  {**state(2, "e1:3", ids=["n-e1-1"]), "seq": 3},  # seqs 2 and 3 committed, not yet pushed
                  note(2), note(3), note(4))
        await stay_open(ws)

    async with fake_stream(script) as fake:
        subscriber = Subscriber(fake.base_url, "jwt", backoff=FAST)
        async with subscriber:
            await take(subscriber, 1)
            assert subscriber.unread == 1
            await take(subscriber, 2)
            assert subscriber.unread == 2  # the frame's count, not 2 + 2
            await take(subscriber, 1)
            assert subscriber.unread == 3  # seq 4 is after the frame's head


# --- Subscriber: the long-poll fallback ------------------------------------------


class FakeInbox:
    """The user API's inbox for a degraded `Subscriber`: an async `httpx.MockTransport` handler.

    ``GET /v1/me/notifications?after=&wait=`` answers the entries after the cursor
    (at most ``page_size``, ``has_more`` past that), waiting up to ``wait`` seconds
    for one when there is none; a cursor of another epoch gets 410. ``forced``
    answers (responses, or exceptions to raise) are played first, in order.
    """

    def __init__(self, entries: int = 0, *, epoch: str = "e1", unread: int = 0, page_size: int = 50) -> None:
        self.epoch = epoch
        self.entries = [entry(seq, epoch) for seq in range(1, entries + 1)]
        self.unread = unread
        self.page_size = page_size
        self.forced: list[httpx.Response | Exception] = []
        self.requests: list[httpx.Request] = []
        self.cancelled = 0  # requests still waiting when they were cancelled
        self._added = asyncio.Event()

    @property
    def head(self) -> str:
        return f"{self.epoch}:{self.entries[-1]['seq'] if self.entries else 0}"

    def add(self, count: int = 1) -> None:
        for _ in range(count):
            self.entries.append(entry(len(self.entries) + 1, self.epoch))
        self._added.set()

    def reset(self, epoch: str, unread: int = 0) -> None:
        self.epoch, self.entries, self.unread = epoch, [], unread

    @property
    def polls(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path == "/v1/me/notifications"]

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.forced:
            answer = self.forced.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        if request.url.path == "/v1/me/unread-count":
            return httpx.Response(200, json={"unread": self.unread, "cursor": self.head})
        assert request.url.path == "/v1/me/notifications"
        after = request.url.params["after"]
        epoch, _, seq = after.partition(":")
        if epoch != self.epoch:
            return problem(410, "cursor_reset")
        deadline = asyncio.get_running_loop().time() + int(request.url.params.get("wait", "0"))
        while True:
            later = [e for e in self.entries if e["seq"] > int(seq)]
            remaining = deadline - asyncio.get_running_loop().time()
            if later or remaining <= 0:
                break
            self._added.clear()
            try:
                await asyncio.wait_for(self._added.wait(), remaining)
            except TimeoutError:
                pass
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        items = later[: self.page_size]
        return httpx.Response(200, json={
            "items": items, "next_cursor": items[-1]["cursor"] if items else after,
            "has_more": len(later) > len(items), "truncated": False,
        })


def degrading(fake: FakeStream, inbox: FakeInbox, token: Any = "jwt", **options: Any) -> Subscriber:
    """A subscriber that polls ``inbox`` after 2 failed WebSocket attempts, and retries the
    WebSocket every ~0.2 s."""
    settings: dict[str, Any] = {"backoff": FAST, "fallback_after": 2, "retry_interval": 0.2, "poll_wait": 5}
    settings.update(options)
    return Subscriber(fake.base_url, token, transport=httpx.MockTransport(inbox), **settings)


async def until(predicate: Callable[[], bool], timeout: float = T) -> None:
    async def check() -> None:
        while not predicate():
            await asyncio.sleep(0.005)

    await asyncio.wait_for(check(), timeout)


@pytest.mark.asyncio
async def test_a_blocked_websocket_falls_back_to_long_poll_from_the_head() -> None:
    inbox = FakeInbox(5, unread=3)  # an old inbox: none of it is replayed
    states: list[ConnectionState] = []
    async with fake_stream(stay_open) as fake:
        fake.refusal = (403, "WebSockets are not allowed here")  # a proxy's page, no problem body
        subscriber = degrading(fake, inbox, on_connection_state=states.append)
        async with subscriber:
            pending = asyncio.ensure_future(anext(subscriber))
            await until(lambda: len(inbox.polls) == 1)
            assert fake.handshakes == 2  # fallback_after
            assert subscriber.degraded and subscriber.state is ConnectionState.DEGRADED
            assert subscriber.unread == 3 and subscriber.cursor == "e1:5"
            inbox.add(2)  # 6 and 7 arrive while the long-poll waits
            first = await asyncio.wait_for(pending, T)
            (second,) = await take(subscriber, 1)
            assert (first.seq, second.seq) == (6, 7)
            assert subscriber.unread == 5 and subscriber.cursor == "e1:7"
            assert await subscriber.mark_read(ids=[first.id]) is False  # use the HTTP client instead
            assert not subscriber.connected
            pending = asyncio.ensure_future(anext(subscriber))  # no background task: iterate
            await until(lambda: fake.handshakes >= 4, 5.0)  # the periodic retries (each after a >= 1 s poll)
    S = ConnectionState
    # Retries while degraded are not reported; DEGRADED once however many polls.
    assert states == [S.CONNECTING, S.DISCONNECTED, S.CONNECTING, S.DISCONNECTED, S.DEGRADED, S.CLOSED]
    assert inbox.requests[0].url.path == "/v1/me/unread-count"
    assert inbox.polls[0].url.params["after"] == "e1:5"
    assert all(r.headers["Authorization"] == "Bearer jwt" for r in inbox.requests)
    assert fake.auths == []


@pytest.mark.asyncio
@pytest.mark.parametrize("fallback_after", [1, 3])
async def test_the_threshold_counts_consecutive_failed_attempts(fallback_after: int) -> None:
    inbox = FakeInbox()
    async with fake_stream(stay_open) as fake:
        fake.refusal = (502, "Bad Gateway")
        backoff = RecordingBackoff()
        async with degrading(fake, inbox, backoff=backoff, fallback_after=fallback_after,
                             retry_interval=30.0) as subscriber:
            pending = asyncio.ensure_future(anext(subscriber))
            await until(lambda: len(inbox.polls) == 1)
            assert fake.handshakes == fallback_after
            assert backoff.calls == list(range(1, fallback_after + 1))
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, T)


@pytest.mark.asyncio
async def test_no_fallback_when_disabled() -> None:
    inbox = FakeInbox()
    async with fake_stream(stay_open) as fake:
        fake.refusal = (403, "")
        async with degrading(fake, inbox, fallback_after=None) as subscriber:
            pending = asyncio.ensure_future(anext(subscriber))
            await until(lambda: fake.handshakes >= 6)
            assert inbox.requests == [] and not subscriber.degraded
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, T)


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "body"), [(401, ""), (403, '{"code": "forbidden", "detail": "no"}')])
async def test_handshake_refusals_with_an_auth_meaning_stay_terminal(status: int, body: str) -> None:
    async with fake_stream(stay_open) as fake:
        fake.refusal = (status, body)
        inbox = FakeInbox()
        async with degrading(fake, inbox) as subscriber:
            with pytest.raises(AuthenticationError) as caught:
                await take(subscriber, 1)
            assert subscriber.closed
    assert caught.value.status == status and fake.handshakes == 1 and inbox.requests == []


@pytest.mark.asyncio
async def test_websocket_to_poll_to_websocket_loses_and_repeats_nothing() -> None:
    async def dropping(ws: ServerConnection, auth: dict[str, Any]) -> None:
        head = int(auth.get("cursor", "e1:0").split(":")[1])
        await say(ws, ready(f"e1:{head}", unread=head), *[note(seq) for seq in (head + 1, head + 2)],
                  {"type": "ping"})
        await asyncio.wait_for(ws.recv(), T)  # the pong: both entries were read
        ws.transport.abort()  # a drop after ready: the path, not the server

    async def back(ws: ServerConnection, auth: dict[str, Any]) -> None:
        # The replay overlaps what polling yielded already (at-least-once), then live.
        await say(ws, note(6), note(7), ready("e1:7", unread=1), note(8))
        await stay_open(ws)

    inbox = FakeInbox(6)
    states: list[ConnectionState] = []
    async with fake_stream(dropping, dropping, back) as fake:
        fake.scripts[2:2] = []  # connections 1 and 2 drop, 3 is the retry from polling
        subscriber = degrading(fake, inbox, on_connection_state=states.append)
        async with subscriber:
            first = await take(subscriber, 4)  # 1, 2 then 3, 4: two drops within the window
            assert [n.seq for n in first] == [1, 2, 3, 4]
            polled = await take(subscriber, 2)
            assert [n.seq for n in polled] == [5, 6] and subscriber.degraded
            rest = await take(subscriber, 2)
            assert [n.seq for n in rest] == [7, 8]
            assert not subscriber.degraded and subscriber.state is ConnectionState.LIVE
            assert subscriber.connected and await subscriber.mark_read(up_to=rest[-1].cursor)
            assert subscriber.unread == 2  # ready's 1, plus the live entry 8
    assert [auth.get("cursor") for auth in fake.auths] == [None, "e1:2", "e1:6"]
    assert inbox.polls[0].url.params["after"] == "e1:4"  # resumed from the last yielded entry
    S = ConnectionState
    assert states == [S.CONNECTING, S.CONNECTED, S.LIVE, S.DISCONNECTED, S.CONNECTING, S.CONNECTED,
                      S.LIVE, S.DISCONNECTED, S.DEGRADED, S.LIVE, S.CLOSED]


@pytest.mark.asyncio
async def test_pages_with_has_more_are_fetched_without_waiting() -> None:
    inbox = FakeInbox(2, page_size=2)
    async with fake_stream(stay_open) as fake:
        fake.refusal = (403, "")
        async with degrading(fake, inbox, retry_interval=30.0) as subscriber:
            pending = asyncio.ensure_future(anext(subscriber))
            await until(lambda: len(inbox.polls) == 1)
            inbox.add(5)  # 3..7 at once: pages of 2
            seqs = [(await asyncio.wait_for(pending, T)).seq] + [n.seq for n in await take(subscriber, 4)]
            pending = asyncio.ensure_future(anext(subscriber))
            await until(lambda: len(inbox.polls) == 4)
    assert seqs == [3, 4, 5, 6, 7]
    waits = [r.url.params["wait"] for r in inbox.polls]
    assert waits[:4] == ["5", "0", "0", "5"]  # has_more twice, then caught up


@pytest.mark.asyncio
async def test_a_rejected_poll_token_is_refreshed_once() -> None:
    minted: list[str] = []

    def provider() -> str:
        minted.append(f"t{len(minted) + 1}")
        return minted[-1]

    inbox = FakeInbox(0)
    inbox.forced = [problem(401, "token_expired")]
    async with fake_stream(stay_open) as fake:
        fake.refusal = (403, "")
        async with degrading(fake, inbox, provider) as subscriber:
            pending = asyncio.ensure_future(anext(subscriber))
            await until(lambda: len(inbox.requests) >= 2)
            inbox.add()
            assert (await asyncio.wait_for(pending, T)).seq == 1
    used = [r.headers["Authorization"].removeprefix("Bearer ") for r in inbox.requests]
    assert used[0] != used[1] and used[1] == minted[minted.index(used[0]) + 1]  # a fresh one
    assert len(set(used)) == len(used)  # the provider is asked before every request


@pytest.mark.asyncio
@pytest.mark.parametrize("provider", [True, False])
async def test_a_poll_token_rejected_for_good_is_terminal(provider: bool) -> None:
    inbox = FakeInbox(0)
    inbox.forced = [problem(401, "unauthorized", "bad token")] * 3
    states: list[ConnectionState] = []
    async with fake_stream(stay_open) as fake:
        fake.refusal = (403, "")
        subscriber = degrading(fake, inbox, (lambda: "jwt") if provider else "jwt",
                               on_connection_state=states.append)
        with pytest.raises(AuthenticationError) as caught:
            await take(subscriber, 1)
        assert subscriber.closed and states[-1] is ConnectionState.CLOSED
    assert len(inbox.requests) == (2 if provider else 1)
    assert (caught.value.status, caught.value.code, caught.value.detail) == (401, "unauthorized", "bad token")


@pytest.mark.asyncio
async def test_a_poll_cursor_reset_restarts_from_the_head() -> None:
    inbox = FakeInbox(0)
    inbox.reset("e2", unread=1)  # the inbox was erased: e1 cursors are gone
    inbox.entries = [entry(1, "e2")]
    resets: list[tuple[str | None, int | None]] = []
    subscriber: Subscriber

    def on_reset() -> None:
        resets.append((subscriber.cursor, subscriber.last_seq))

    async with fake_stream(stay_open) as fake:
        fake.refusal = (403, "")
        subscriber = degrading(fake, inbox, cursor="e1:7", on_reset=on_reset)
        async with subscriber:
            pending = asyncio.ensure_future(anext(subscriber))
            await until(lambda: len(inbox.polls) == 2)
            inbox.add()
            fresh = await asyncio.wait_for(pending, T)
            assert (fresh.seq, fresh.cursor) == (2, "e2:2")  # not dropped as "old"; 1 not replayed
            assert subscriber.unread == 2
    assert resets == [(None, None)]
    paths = [(r.url.path, r.url.params.get("after")) for r in inbox.requests[:3]]
    assert paths == [("/v1/me/notifications", "e1:7"), ("/v1/me/unread-count", None),
                     ("/v1/me/notifications", "e2:1")]


@pytest.mark.asyncio
async def test_failed_polls_go_offline_back_off_and_honour_retry_after() -> None:
    inbox = FakeInbox(0)
    inbox.forced = [
        httpx.ConnectError("refused"),
        httpx.Response(503, headers={"Retry-After": "0.3"}, json={"code": "unavailable"}),
    ]
    backoff = RecordingBackoff()
    states: list[ConnectionState] = []
    async with fake_stream(stay_open) as fake:
        fake.refusal = (403, "")
        async with degrading(fake, inbox, backoff=backoff, on_connection_state=states.append,
                             retry_interval=30.0) as subscriber:
            pending = asyncio.ensure_future(anext(subscriber))
            await until(lambda: len(inbox.requests) >= 3)
            assert subscriber.state is ConnectionState.DEGRADED
            inbox.add()
            assert (await asyncio.wait_for(pending, T)).seq == 1
    S = ConnectionState
    assert states == [S.CONNECTING, S.DISCONNECTED, S.CONNECTING, S.DISCONNECTED, S.OFFLINE,
                      S.DEGRADED, S.CLOSED]
    assert backoff.calls == [1, 2, 1, 2]  # the WebSocket's failures, then the polls' own count
    assert [r.url.path for r in inbox.requests[:3]] == ["/v1/me/unread-count"] * 3


@pytest.mark.asyncio
async def test_after_offline_the_websocket_is_retried_as_soon_as_polling_answers() -> None:
    async def live(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready(auth.get("cursor", "e1:0")), note(1))
        await stay_open(ws)

    inbox = FakeInbox(0)
    failed: list[str] = []

    async def server_down_once(request: httpx.Request) -> httpx.Response:
        if not failed:
            failed.append(request.url.path)
            fake.refusal = None  # the server comes back whole: upgrades work again too
            raise httpx.ConnectError("refused")
        return await inbox(request)

    states: list[ConnectionState] = []
    async with fake_stream(live) as fake:
        fake.refusal = (502, "Bad Gateway")
        subscriber = Subscriber(fake.base_url, "jwt", backoff=FAST, fallback_after=2, retry_interval=30.0,
                                on_connection_state=states.append, transport=httpx.MockTransport(server_down_once))
        async with subscriber:
            (first,) = await take(subscriber, 1)  # by the WebSocket, long before 30 s
            assert first.seq == 1 and subscriber.state is ConnectionState.LIVE
    S = ConnectionState
    assert states == [S.CONNECTING, S.DISCONNECTED, S.CONNECTING, S.DISCONNECTED, S.OFFLINE, S.DEGRADED,
                      S.LIVE, S.CLOSED]
    assert fake.auths == [{"type": "auth", "token": "jwt", "cursor": "e1:0"}]  # from the polled head


@pytest.mark.asyncio
async def test_retry_after_is_waited_up_to_the_cap() -> None:
    inbox = FakeInbox(0)
    inbox.forced = [httpx.Response(503, headers={"Retry-After": "0.4"}, json={"code": "unavailable"})]
    stamps: list[float] = []
    loop = asyncio.get_running_loop()

    async def stamped(request: httpx.Request) -> httpx.Response:
        stamps.append(loop.time())
        return await inbox(request)

    async with fake_stream(stay_open) as fake:
        fake.refusal = (403, "")
        subscriber = Subscriber(fake.base_url, "jwt", backoff=Backoff(base=0.01, cap=5.0), fallback_after=1,
                                retry_interval=30.0, transport=httpx.MockTransport(stamped))
        async with subscriber:
            pending = asyncio.ensure_future(anext(subscriber))
            await until(lambda: len(stamps) >= 2)
            pending.cancel()
    assert 0.4 <= stamps[1] - stamps[0] < 1.5


@pytest.mark.asyncio
async def test_close_ends_a_pending_long_poll_at_once() -> None:
    inbox = FakeInbox(0)
    async with fake_stream(stay_open) as fake:
        fake.refusal = (403, "")
        subscriber = degrading(fake, inbox, poll_wait=60, retry_interval=120.0)
        pending = asyncio.ensure_future(anext(subscriber))
        await until(lambda: len(inbox.polls) == 1)
        await asyncio.sleep(0.05)  # the poll is waiting server-side
        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(subscriber.close(), T)
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(pending, T)
        assert asyncio.get_running_loop().time() - started < 1.0
    assert inbox.cancelled == 1 and subscriber.closed and not subscriber.degraded


@pytest.mark.asyncio
async def test_cancelling_the_iteration_cancels_the_poll_request() -> None:
    inbox = FakeInbox(0)
    async with fake_stream(stay_open) as fake:
        fake.refusal = (403, "")
        async with degrading(fake, inbox, poll_wait=60, retry_interval=120.0) as subscriber:
            pending = asyncio.ensure_future(anext(subscriber))
            await until(lambda: len(inbox.polls) == 1)
            await asyncio.sleep(0.05)
            pending.cancel()
            with pytest.raises(asyncio.CancelledError):
                await pending
            await until(lambda: inbox.cancelled == 1)
            inbox.add()
            assert (await take(subscriber, 1))[0].seq == 1  # iterating again resumes


@pytest.mark.asyncio
async def test_the_unread_count_is_reread_when_polling_is_idle() -> None:
    inbox = FakeInbox(3, unread=2)
    async with fake_stream(stay_open) as fake:
        fake.refusal = (403, "")
        async with degrading(fake, inbox, poll_wait=1, retry_interval=30.0) as subscriber:
            pending = asyncio.ensure_future(anext(subscriber))
            await until(lambda: subscriber.unread == 2)
            inbox.unread = 0  # read on another device: no state frame reaches a poller
            await until(lambda: subscriber.unread == 0, 3.0)  # after one idle long-poll
            pending.cancel()


def test_subscriber_validates_fallback_arguments() -> None:
    for bad in ({"fallback_after": 0}, {"fallback_after": True}, {"poll_wait": 0}, {"poll_wait": 61},
                {"poll_wait": 2.5}, {"retry_interval": 0}, {"fallback_window": -1}):
        with pytest.raises(ValueError):
            Subscriber("http://h", "jwt", **bad)
