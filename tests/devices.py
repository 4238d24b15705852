"""Test clients that speak the wire protocol directly (raw WebSocket and HTTP, no SDK)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from service.auth.tokens import mint_user_token
from tests.harness import API_KEY, JWT_SECRET


def token(user: str, ttl_s: int = 3600) -> str:
    """A valid user token for ``user``."""
    return mint_user_token(JWT_SECRET, user, ttl_s)


class Device:
    """One WebSocket device: connects, authenticates, records every frame it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.close_code: int | None = None
        self.close_reason: str = ""
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(
        cls, url: str, user_token: str | None, cursor: str | None = None, *, wait_ready: bool = True
    ) -> Device:
        """Connect and send the auth frame (none when ``user_token`` is None, i.e. it is in
        the URL); by default wait for ``ready``."""
        ws = await asyncio.wait_for(connect(url, open_timeout=5, ping_interval=None), 10)
        if user_token is not None:
            frame: dict[str, Any] = {"type": "auth", "token": user_token}
            if cursor is not None:
                frame["cursor"] = cursor
            await ws.send(json.dumps(frame))
        device = cls(ws)
        if wait_ready:
            await device.ready()
        return device

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                self.frames.append(json.loads(raw))
                self._changed.set()
        except ConnectionClosed:
            pass
        finally:
            if self.ws.close_code is not None:
                self.close_code = self.ws.close_code
                self.close_reason = self.ws.close_reason or ""
            self._changed.set()

    async def _until(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out waiting for {what}; frames: {self.frames[-5:]}, close={self.close_code}")
            self._changed.clear()
            if predicate():
                break
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def ready(self, timeout: float = 10) -> dict[str, Any]:
        """The ``ready`` frame."""
        await self._until(lambda: any(f["type"] == "ready" for f in self.frames), timeout, "ready")
        return next(f for f in self.frames if f["type"] == "ready")

    @property
    def notifications(self) -> list[dict[str, Any]]:
        """Every entry received, in arrival order."""
        return [f["notification"] for f in self.frames if f["type"] == "notification"]

    async def wait_notifications(self, count: int, timeout: float = 15) -> list[dict[str, Any]]:
        """Wait until at least ``count`` entries arrived; return them all."""
        await self._until(lambda: len(self.notifications) >= count, timeout, f"{count} notifications")
        return self.notifications

    async def wait_closed(self, timeout: float = 10) -> int:
        """Wait for the server to close the socket; its close code."""
        await self._until(lambda: self._reader.done(), timeout, "close")
        assert self.close_code is not None
        return self.close_code

    async def close(self) -> None:
        """Close from the client side."""
        await self.ws.close()
        await asyncio.wait_for(self._reader, 5)


async def send(
    base_url: str, users: list[str], title: str = "hello", *, key: str = API_KEY, **fields: Any
) -> httpx.Response:
    """POST /v1/notifications."""
    body = {"recipients": {"users": users}, "type": fields.pop("type", "test"), "title": title, **fields}
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.post(
            f"{base_url}/v1/notifications", json=body, headers={"Authorization": f"Bearer {key}"}
        )


async def status(base_url: str, notification_id: str) -> dict[str, Any]:
    """GET /v1/notifications/{id}."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(
            f"{base_url}/v1/notifications/{notification_id}", headers={"Authorization": f"Bearer {API_KEY}"}
        )
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


async def wait_delivered(base_url: str, notification_id: str, timeout: float = 20) -> dict[str, Any]:
    """Poll the status until ``delivered``."""
    deadline = time.monotonic() + timeout
    while True:
        current = await status(base_url, notification_id)
        if current["status"] == "delivered":
            return current
        if time.monotonic() > deadline:
            raise AssertionError(f"not delivered in {timeout}s: {current}")
        await asyncio.sleep(0.05)


async def poll(base_url: str, user_token: str, **params: Any) -> httpx.Response:
    """GET /v1/me/notifications."""
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(
            f"{base_url}/v1/me/notifications",
            params=params,
            headers={"Authorization": f"Bearer {user_token}"},
        )


async def producer_call(base_url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Any producer API call, with the test API key."""
    headers = {"Authorization": f"Bearer {API_KEY}", **kwargs.pop("headers", {})}
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await client.request(method, path, headers=headers, **kwargs)


async def user_call(base_url: str, user_token: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """Any user API call, with ``user_token``."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as client:
        return await client.request(method, path, headers={"Authorization": f"Bearer {user_token}"}, **kwargs)
