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
from datetime import UTC, datetime
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
    Subscriber,
    TidingsClient,
    TidingsError,
    TransportError,
    UnavailableError,
    UserClient,
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


@pytest.mark.asyncio
async def test_async_clients() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/notifications":
            return httpx.Response(202, json={"id": "n1", "status": "accepted"})
        if request.url.path == "/v1/notifications/n1":
            return problem(404, "not_found")
        if request.url.path == "/v1/me/unread-count":
            return httpx.Response(200, json={"unread": 0})
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
    assert recorder.requests[0].headers["Idempotency-Key"] == "i"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    async with AsyncUserClient(BASE, "jwt", transport=httpx.MockTransport(refuse)) as user:
        with pytest.raises(TransportError):
            await asyncio.wait_for(user.unread_count(), T)


# --- Subscriber against a fake stream ------------------------------------------


Script = Callable[[ServerConnection, dict[str, Any]], Awaitable[None]]


class FakeStream:
    """A scripted v1 stream: connection i runs ``scripts[i]`` (the last one repeats)."""

    def __init__(self, scripts: list[Script]) -> None:
        self.scripts = scripts
        self.auths: list[dict[str, Any]] = []
        self.base_url = ""

    async def handler(self, ws: ServerConnection) -> None:
        auth = json.loads(await asyncio.wait_for(ws.recv(), T))
        self.auths.append(auth)
        script = self.scripts[min(len(self.auths), len(self.scripts)) - 1]
        await script(ws, auth)


@asynccontextmanager
async def fake_stream(*scripts: Script) -> AsyncIterator[FakeStream]:
    fake = FakeStream(list(scripts))
    async with serve(fake.handler, "127.0.0.1", 0) as server:
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
            assert subscriber.cursor == "e2:1" and subscriber.unread == 1
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
        async with subscriber:
            loop = asyncio.get_running_loop()
            started = loop.time()
            assert [item.seq for item in await take(subscriber, 2)] == [1, 2]
            assert loop.time() - started < 2.0
    assert fake.auths[1]["cursor"] == "e1:1"


@pytest.mark.asyncio
async def test_connection_states_state_frames_and_restart() -> None:
    async def first(ws: ServerConnection, auth: dict[str, Any]) -> None:
        state = {"type": "state", "read": ["n-e1-1"], "read_at": "2025-01-03T00:00:00Z"}
        await say(ws, ready("e1:0", unread=2), {"type": "surprise"}, state, note(1))
        await ws.close(1012, "service restart")

    async def second(ws: ServerConnection, auth: dict[str, Any]) -> None:
        await say(ws, ready("e1:1"), note(2))
        await stay_open(ws)

    states: list[ConnectionState] = []
    frames: list[dict[str, Any]] = []
    async with fake_stream(first, second) as fake:
        subscriber = Subscriber(fake.base_url, "jwt", backoff=FAST, on_state=frames.append,
                                on_connection_state=states.append)
        async with subscriber:
            (one,) = await take(subscriber, 1)
            assert subscriber.unread == 2 and frames[0]["read"] == ["n-e1-1"]
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
