"""The concurrency property scenario, shared by the test (small) and ``make bench`` (large).

Producers send to overlapping users while pollers advance their cursors and WebSocket devices
stay connected (and reconnect with their cursor now and then), all under a seeded schedule. At
the end every inbox must hold seqs 1..n with no notification twice; what each poller saw must be
the whole inbox; what each device saw, after dropping seq <= last, must be the inbox in order.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.devices import token
from tests.harness import API_KEY


@dataclass(frozen=True)
class Scale:
    """How big a run is."""

    producers: int = 3
    notifications_per_producer: int = 40
    users: int = 12
    max_recipients: int = 5
    reconnects_per_device: int = 3


@dataclass
class Outcome:
    """What one run observed, and its verdict."""

    seed: int
    sent: dict[str, set[str]] = field(default_factory=dict)  # user -> notification ids
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for humans."""
        entries = sum(len(ids) for ids in self.sent.values())
        return (f"seed={self.seed}: {len(self.sent)} users, {entries} inbox entries, {self.seconds:.1f}s, "
                f"{len(self.problems)} problems")


async def _producer(base_url: str, rng: random.Random, users: list[str], scale: Scale, outcome: Outcome,
                    client: httpx.AsyncClient, index: int) -> None:
    for i in range(scale.notifications_per_producer):
        recipients = rng.sample(users, rng.randint(1, min(scale.max_recipients, len(users))))
        # Retried on a dropped connection: safe, since the Idempotency-Key makes it one notification.
        response = await _request(
            client, "POST", f"{base_url}/v1/notifications",
            json={"recipients": {"users": recipients}, "type": "prop", "title": f"p{index}-{i}"},
            headers={"Authorization": f"Bearer {API_KEY}", "Idempotency-Key": f"p{index}-{i}"},
        )
        if response.status_code != 202:
            outcome.problems.append(f"send {index}/{i}: {response.status_code} {response.text}")
            continue
        notification_id = response.json()["id"]
        for user in recipients:
            outcome.sent.setdefault(user, set()).add(notification_id)
        await asyncio.sleep(rng.uniform(0, 0.03))


async def _get(client: httpx.AsyncClient, url: str, **kwargs: Any) -> httpx.Response:
    """A GET retried on a dropped connection."""
    return await _request(client, "GET", url, **kwargs)


async def _request(client: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """A request retried on a dropped connection (e.g. a keep-alive connection the server just closed)."""
    for attempt in range(5):
        try:
            return await client.request(method, url, **kwargs)
        except httpx.TransportError:
            if attempt == 4:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


async def _poller(base_url: str, user: str, rng: random.Random, client: httpx.AsyncClient, stop: asyncio.Event,
                  seen: list[dict[str, Any]]) -> None:
    """Advance a cursor until told to stop, then drain what is left."""
    cursor: str | None = None
    headers = {"Authorization": f"Bearer {token(user)}"}
    while True:
        stopping = stop.is_set()
        params: dict[str, Any] = {"limit": rng.randint(1, 10)}
        if cursor is not None:
            params["after"] = cursor
        page = (await _get(client, f"{base_url}/v1/me/notifications", params=params, headers=headers)).json()
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if stopping and not page["has_more"]:
            return
        if not page["has_more"]:
            await asyncio.sleep(rng.uniform(0.01, 0.1))


async def _device(ws_urls: list[str], user: str, rng: random.Random, scale: Scale, stop: asyncio.Event,
                  delivered: list[dict[str, Any]], problems: list[str], live: asyncio.Event) -> None:
    """A WebSocket device that reconnects with its cursor a few times, deduping by seq.

    Its first connection (no cursor: live from the head) sets ``live`` once ``ready`` came, and
    nothing is sent before every device is live, so each device must see its whole inbox.
    """
    last_seq, cursor = 0, None
    reconnects = scale.reconnects_per_device
    while True:
        url = rng.choice(ws_urls)
        async with connect(url, open_timeout=10, ping_interval=None) as ws:
            await ws.send(json.dumps({"type": "auth", "token": token(user), **({"cursor": cursor} if cursor else {})}))
            stay = rng.uniform(0.3, 2.0) if reconnects > 0 else None
            started = time.monotonic()
            while True:
                if stay is not None and time.monotonic() - started > stay:
                    break
                if stay is None and stop.is_set():
                    return
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    continue
                except ConnectionClosed as closed:
                    problems.append(f"{user}: stream closed {closed.rcvd}")
                    return
                frame = json.loads(raw)
                if frame["type"] == "ready":
                    live.set()
                    if cursor is None:
                        cursor = frame["cursor"]  # resume from here, not from a later head
                if frame["type"] != "notification":
                    continue
                entry = frame["notification"]
                if entry["seq"] <= last_seq:
                    continue  # at-least-once on the wire: dedupe by seq
                if entry["seq"] != last_seq + 1:
                    problems.append(f"{user}: device got seq {entry['seq']} after {last_seq}")
                delivered.append(entry)
                last_seq, cursor = entry["seq"], entry["cursor"]
        reconnects -= 1


async def _inbox(base_url: str, user: str, client: httpx.AsyncClient) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"after": cursor} if cursor else {})}
        page = (await _get(client, f"{base_url}/v1/me/notifications", params=params,
                           headers={"Authorization": f"Bearer {token(user)}"})).json()
        items.extend(page["items"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items


async def run(base_urls: list[str], seed: int, scale: Scale, settle_timeout: float = 60) -> Outcome:
    """Run the scenario against running services (and workers); return what it found."""
    started = time.monotonic()
    rng = random.Random(seed)
    outcome = Outcome(seed=seed)
    users = [f"prop{seed % 1000}-{i}" for i in range(scale.users)]
    ws_urls = [url.replace("http://", "ws://") + "/v1/stream" for url in base_urls]
    stop = asyncio.Event()
    polled: dict[str, list[dict[str, Any]]] = {user: [] for user in users}
    delivered: dict[str, list[dict[str, Any]]] = {user: [] for user in users}
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=50)) as client:
        live = {u: asyncio.Event() for u in users}
        devices = [asyncio.create_task(_device(ws_urls, u, random.Random(rng.random()), scale, stop, delivered[u],
                                               outcome.problems, live[u])) for u in users]
        pollers = [asyncio.create_task(_poller(rng.choice(base_urls), u, random.Random(rng.random()), client, stop,
                                               polled[u])) for u in users]
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in live.values())), 60)
        await asyncio.gather(*(
            _producer(rng.choice(base_urls), random.Random(rng.random()), users, scale, outcome, client, i)
            for i in range(scale.producers)
        ))
        # Wait until every inbox holds what was sent (the workers may still be fanning out).
        deadline = time.monotonic() + settle_timeout
        final: dict[str, list[dict[str, Any]]] = {}
        while True:
            final = {u: await _inbox(base_urls[0], u, client) for u in users}
            if all(len(final[u]) >= len(outcome.sent.get(u, ())) for u in users) or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        # Then until every device has caught up with its inbox.
        while any(len(delivered[u]) < len(final[u]) for u in users) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        stop.set()
        await asyncio.gather(*pollers)
        await asyncio.wait_for(asyncio.gather(*devices), 30)
    for user in users:
        inbox = final[user]
        ids = [e["id"] for e in inbox]
        if [e["seq"] for e in inbox] != list(range(1, len(inbox) + 1)):
            outcome.problems.append(f"{user}: seqs are not 1..n: {[e['seq'] for e in inbox][:50]}")
        if len(set(ids)) != len(ids):
            outcome.problems.append(f"{user}: a notification appears twice")
        if set(ids) != outcome.sent.get(user, set()):
            outcome.problems.append(f"{user}: inbox {len(ids)} entries vs {len(outcome.sent.get(user, ()))} sent")
        if [e["id"] for e in polled[user]] != ids:
            outcome.problems.append(f"{user}: the poller saw {len(polled[user])} entries, not the inbox's {len(ids)}")
        if [e["id"] for e in delivered[user]] != ids:
            outcome.problems.append(f"{user}: the device saw {len(delivered[user])} entries, not the inbox in order")
    outcome.seconds = time.monotonic() - started
    return outcome
