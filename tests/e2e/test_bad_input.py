"""Bad input gets a 4xx problem document or a close code with a JSON error; the service keeps serving."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from service.domain.cursor import Cursor
from tests.devices import Device, poll, send, token, user_call
from tests.harness import API_KEY, Deployment, Service, Worker, running

pytestmark = pytest.mark.e2e

VALID: dict[str, Any] = {"recipients": {"users": ["gina"]}, "type": "test", "title": "ok"}

BAD_BODIES = [
    ({}, "recipients"),
    ({"recipients": {"users": ["gina"]}, "title": "no type"}, "type"),
    ({"recipients": {"users": ["gina"]}, "type": "t"}, "title"),
    ({"recipients": {}, "type": "t", "title": "x"}, "recipients"),
    ({"recipients": {"users": ["a"], "topic": "t"}, "type": "t", "title": "x"}, "recipients"),
    ({"recipients": {"topic": "has/slash"}, "type": "t", "title": "x"}, "recipients.topic"),
    ({"recipients": {"topic": ""}, "type": "t", "title": "x"}, "recipients.topic"),
    ({"recipients": {"users": []}, "type": "t", "title": "x"}, "recipients.users"),
    ({"recipients": {"users": [f"u{i}" for i in range(1001)]}, "type": "t", "title": "x"}, "recipients.users"),
    ({**VALID, "data": [1, 2]}, "data"),
    ({**VALID, "data": "text"}, "data"),
    ({**VALID, "priority": "urgent"}, "priority"),
    ({**VALID, "title": ""}, "title"),
    ({**VALID, "recipients": {"users": ["has space"]}}, "recipients.users[0]"),
    ({**VALID, "recipients": {"users": [7]}}, "recipients.users[0]"),
    ({**VALID, "unexpected": 1}, "unexpected"),
    ({**VALID, "body": "x" * 10_001}, "body"),
    ({**VALID, "title": "nul\u0000inside"}, "title"),
    ({**VALID, "body": "nul\u0000inside"}, "body"),
    ({**VALID, "ttl_seconds": 0}, "ttl_seconds"),
    ({**VALID, "ttl_seconds": "soon"}, "ttl_seconds"),
    ({**VALID, "ttl_seconds": 10**12}, "ttl_seconds"),
    ({**VALID, "send_at": "2026-12-24T09:00:00"}, "send_at"),  # no offset: ambiguous
    ({**VALID, "send_at": "tomorrow"}, "send_at"),
    ({**VALID, "send_at": "2999-01-01T00:00:00Z"}, "send_at"),  # more than a year ahead
]

RAW_BAD_BODIES = [
    # Nested past the decoder's recursion limit, and past our own depth limit.
    b'{"recipients":{"users":["u1"]},"type":"t","title":"hi","data":{"x":' + b"[" * 1000 + b"]" * 1000 + b"}}",
    b'{"recipients":{"users":["u1"]},"type":"t","title":"hi","data":' + b'{"a":' * 3000 + b"1" + b"}" * 3001,
    b'{"recipients":{"users":["u1"]},"type":"t","title":"hi","data":{"x":' + b"[" * 40 + b"]" * 40 + b"}}",
]


def assert_problem(response: httpx.Response, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status and problem["code"] == code and problem["detail"], problem
    if field is not None:
        assert problem.get("field") == field, problem
    return problem


async def test_bad_requests_get_clear_errors_and_the_service_keeps_serving(deployment: Deployment) -> None:
    service = Service(deployment, TIDINGS_AUTH_TIMEOUT_S="0.5")
    worker = Worker(deployment)
    with running(service, worker):
        await service.wait_ready_async()
        url = service.url
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            auth = {"Authorization": f"Bearer {API_KEY}"}
            for body, field in BAD_BODIES:
                assert_problem(await client.post("/v1/notifications", json=body, headers=auth), 400, "invalid_request", field)
            for raw in (b"{not json", b"", b"[]", b"null", b"\xff\xfe"):
                response = await client.post(
                    "/v1/notifications", content=raw, headers={**auth, "Content-Type": "application/json"}
                )
                assert_problem(response, 400, "invalid_request")
            for raw in RAW_BAD_BODIES:
                response = await client.post(
                    "/v1/notifications", content=raw, headers={**auth, "Content-Type": "application/json"}
                )
                assert_problem(response, 400, "invalid_request", "data")
            huge = {**VALID, "data": {"blob": "x" * 400_000}}
            assert_problem(await client.post("/v1/notifications", json=huge, headers=auth), 413, "payload_too_large")
            long_key = {**auth, "Idempotency-Key": "k" * 300}
            assert_problem(await client.post("/v1/notifications", json=VALID, headers=long_key), 400, "invalid_request")

            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}, {"Authorization": "Bearer"}):
                assert_problem(await client.post("/v1/notifications", json=VALID, headers=headers), 401, "unauthorized")
            # A user token is not a producer key, and a producer key is not a user token.
            assert_problem(
                await client.post("/v1/notifications", json=VALID, headers={"Authorization": f"Bearer {token('gina')}"}),
                401,
                "unauthorized",
            )
            assert_problem(await poll(url, API_KEY), 401, "unauthorized")
            assert_problem(await poll(url, token("gina", ttl_s=-60)), 401, "unauthorized")
            assert_problem(await client.get("/v1/me/notifications"), 401, "unauthorized")

            gina = token("gina")
            for cursor in ("garbage", "", "A" * 100, "AQAAAAEAAAAAAAAAAQ==", Cursor(1, 5).encode() + "x"):
                assert_problem(await poll(url, gina, after=cursor), 400, "invalid_cursor", "after")
            for limit in ("0", "501", "ten", "-1"):
                assert_problem(await poll(url, gina, limit=limit), 400, "invalid_request", "limit")
            # A well-formed cursor of another epoch, or ahead of the inbox, is a reset, not a crash.
            assert_problem(await poll(url, gina, after=Cursor(7, 1).encode()), 410, "cursor_reset")
            assert_problem(await poll(url, gina, after=Cursor(1, 99).encode()), 410, "cursor_reset")

            assert_problem(await client.get("/v1/notifications/does-not-exist", headers=auth), 404, "not_found")
            assert_problem(await client.get("/v1/notifications/ab%00cd", headers=auth), 404, "not_found")
            assert_problem(await client.get("/v1/notifications/" + "a" * 5000, headers=auth), 404, "not_found")
            control = {**auth, "Idempotency-Key": "tab\there"}
            assert_problem(await client.post("/v1/notifications", json=VALID, headers=control), 400, "invalid_request")
            assert_problem(await client.get("/v1/nowhere"), 404, "not_found")
            assert_problem(await client.put("/v1/notifications", json=VALID, headers=auth), 405, "method_not_allowed")

        # WebSocket: every refusal is an error frame (JSON) and then a close code.
        async def refused(first_frame: str | None, query: str = "") -> tuple[dict[str, Any], int]:
            async with connect(service.ws_url + query, open_timeout=5, ping_interval=None) as ws:
                if first_frame is not None:
                    await ws.send(first_frame)
                error = json.loads(await ws.recv())
                await ws.wait_closed()
                assert ws.close_code is not None
                return error, ws.close_code

        cases = [
            (None, "", "unauthorized", 1008),  # no auth frame within the timeout
            ("not json", "", "unauthorized", 1008),
            (json.dumps({"type": "hello"}), "", "unauthorized", 1008),
            (json.dumps({"type": "auth", "token": "nope"}), "", "unauthorized", 1008),
            (json.dumps({"type": "auth", "token": token("gina", ttl_s=-60)}), "", "unauthorized", 1008),
            (json.dumps({"type": "auth", "token": API_KEY}), "", "unauthorized", 1008),
            (json.dumps({"type": "auth", "token": token("gina"), "cursor": "bad"}), "", "invalid_cursor", 4009),
            (json.dumps({"type": "auth", "token": token("gina"), "cursor": Cursor(9, 1).encode()}), "", "cursor_reset", 4009),
            (None, "?token=wrong", "unauthorized", 1008),
        ]
        for first_frame, query, code, close_code in cases:
            error, closed_with = await refused(first_frame, query)
            assert error["type"] == "error" and error["code"] == code and error["message"], (first_frame, error)
            assert closed_with == close_code, (first_frame, closed_with)

        # Every refusal is counted, by close code.
        async with httpx.AsyncClient() as client:
            metrics = (await client.get(f"{url}/metrics")).text
        assert 'tidings_streams_closed_total{code="1008"} 7.0' in metrics, metrics
        assert 'tidings_streams_closed_total{code="4009"} 2.0' in metrics, metrics

        # Still serving: a valid send reaches a device authenticated through the URL.
        device = await Device.connect(service.ws_url + f"?token={token('gina')}", None)
        answer = await send(url, ["gina"], "still here")
        assert answer.status_code == 202
        (entry,) = await device.wait_notifications(1)
        assert entry["title"] == "still here"
        await device.close()
        assert service.alive()
        assert "Traceback" not in service.output(), service.output()[-3000:]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_bad_long_poll_parameters_are_refused(deployment: Deployment) -> None:
    service = Service(deployment)
    with running(service):
        await service.wait_ready_async()
        gina = token("gina")
        for wait in ("61", "-1", "soon", "1.5"):
            assert_problem(await poll(service.url, gina, wait=wait), 400, "invalid_request", "wait")
        head = (await poll(service.url, gina)).json()["next_cursor"]
        assert_problem(await poll(service.url, gina, before=head, wait="1"), 400, "invalid_request", "wait")


async def test_new_endpoints_refuse_bad_input_with_the_right_field(deployment: Deployment) -> None:
    """Topics, scheduling, batch and read state: what a careless or hostile client sends."""
    service = Service(deployment)
    with running(service):
        await service.wait_ready_async()
        url = service.url
        async with httpx.AsyncClient(base_url=url, timeout=10, headers={"Authorization": f"Bearer {API_KEY}"}) as client:
            # An encoded or doubled slash must not land on another topic (or user).
            for path in ("/v1/topics/zz%2F/subscribers/x", "/v1/topics/%2Fzz/subscribers/x",
                         "/v1/topics/zz//subscribers/x", "/v1//topics/zz/subscribers/x", "/v1/users/x%2F/topics"):
                assert_problem(await client.put(path) if "users" not in path else await client.get(path),
                               400, "invalid_request", "path")
            assert (await client.get("/v1/users/x/topics")).json()["items"] == []
            # A moment that does not exist in UTC, alone and inside a batch.
            for early in ("0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00+00:01"):
                assert_problem(await client.post("/v1/notifications", json={**VALID, "send_at": early}),
                               400, "invalid_request", "send_at")
            batch = await client.post("/v1/notifications/batch", json={"notifications": [
                VALID, {**VALID, "send_at": "0001-01-01T00:00:00+14:00"}, VALID]})
            assert batch.status_code == 202
            results = batch.json()["results"]
            assert [bool(r.get("id")) for r in results] == [True, False, True]
            assert results[1]["error"]["field"] == "notifications[1].send_at"
            # One moment with two offsets is one request for its Idempotency-Key.
            key = {"Idempotency-Key": "same-moment"}
            first = await client.post("/v1/notifications", headers=key, json={**VALID, "send_at": "2026-01-01T12:00:00+02:00"})
            again = await client.post("/v1/notifications", headers=key, json={**VALID, "send_at": "2026-01-01T10:00:00Z"})
            assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
            # No body at all is not a field called "data".
            # (POST /v1/notifications has a field called data, so a null body there says field "data".)
            for path in ("/v1/topics/t/subscribers", "/v1/notifications/batch"):
                for raw in (b"", b"null", b"[]"):
                    response = await client.post(path, content=raw, headers={"Content-Type": "application/json"})
                    problem = assert_problem(response, 400, "invalid_request")
                    assert problem.get("field") is None, (path, raw, problem)
            empty = await client.post("/v1/notifications", content=b"", headers={"Content-Type": "application/json"})
            assert assert_problem(empty, 400, "invalid_request").get("field") is None
            bad_key = await client.post("/v1/notifications", headers={"Idempotency-Key": "a\tb"}, json=VALID)
            assert_problem(bad_key, 400, "invalid_request", "Idempotency-Key")
        user = token("pat")
        ahead = await user_call(url, user, "POST", "/v1/me/notifications/read", json={"up_to": Cursor(1, 50).encode()})
        assert assert_problem(ahead, 410, "cursor_reset")["detail"].startswith("the cursor is ahead")
        empty = await user_call(url, user, "POST", "/v1/me/notifications/read", content=b"")
        assert assert_problem(empty, 400, "invalid_request").get("field") is None
