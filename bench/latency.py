"""Enqueue-to-device latency: N notifications, one recipient each, over D connected devices.

Every notification carries ``data.ts`` (wall-clock µs just before its POST);
the device that receives it records receipt time - ts. The POSTs go out at a
steady rate, so this measures latency under a known load, not a burst. A
short burst to offline users afterwards gives the enqueue API's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import httpx

from bench.common import PRODUCER_HEADERS, Device, Devices, Result, now_us, percentile, stack

NAME = "latency"
PRODUCER_CONNECTIONS = 8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's flags."""
    group = parser.add_argument_group("latency")
    group.add_argument("--latency-devices", type=int, default=100, help="connected devices (default 100)")
    group.add_argument("--latency-count", type=int, default=1000, help="notifications sent (default 1000)")
    group.add_argument("--latency-rate", type=float, default=50.0, help="POSTs per second (default 50: below what SQLite sustains on 2 cores, so latency is not queueing)")
    group.add_argument("--burst-count", type=int, default=1000, help="POSTs of the throughput burst, 0 = skip (default 1000)")


def quick(args: argparse.Namespace) -> None:
    """Shrink to a smoke size."""
    args.latency_devices, args.latency_count, args.burst_count = 10, 100, 100


async def _post(client: httpx.AsyncClient, user: str, data: dict[str, Any]) -> int:
    body = {"recipients": {"users": [user]}, "type": "bench", "title": "t", "data": data}
    try:
        response = await client.post("/v1/notifications", json=body)
    except httpx.HTTPError:
        return 0
    return response.status_code


async def _steady(client: httpx.AsyncClient, users: list[str], count: int, rate: float) -> tuple[list[float], list[int], float]:
    """POST ``count`` notifications at ``rate``/s; (API latencies in ms, statuses, seconds taken)."""
    api_ms: list[float] = []
    statuses: list[int] = []

    async def send(i: int) -> None:
        started = time.perf_counter()
        statuses.append(await _post(client, users[i % len(users)], {"ts": now_us(), "i": i}))
        api_ms.append((time.perf_counter() - started) * 1000)

    tasks = []
    start = time.perf_counter()
    for i in range(count):
        # Schedule against the start, not the previous send, so the rate does not drift.
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(i)))
    await asyncio.gather(*tasks)
    return api_ms, statuses, time.perf_counter() - start


async def _burst(client: httpx.AsyncClient, count: int) -> tuple[float, int]:
    """As many POSTs as the connections carry, to users with no device; (requests/s, non-202 count)."""
    gate = asyncio.Semaphore(PRODUCER_CONNECTIONS * 2)

    async def send(i: int) -> int:
        async with gate:
            return await _post(client, f"offline{i}", {"i": i})

    start = time.perf_counter()
    statuses = await asyncio.gather(*(send(i) for i in range(count)))
    elapsed = time.perf_counter() - start
    return count / elapsed, sum(1 for s in statuses if s != 202)


async def _measure(ws_url: str, base_url: str, args: argparse.Namespace, result: Result) -> None:
    users = [f"u{i}" for i in range(args.latency_devices)]
    latencies_ms: list[float] = []
    seen: set[int] = set()
    duplicates = 0

    def on_entry(_: Device, received_us: int, entry: dict[str, Any]) -> None:
        nonlocal duplicates
        data = entry.get("data") or {}
        if "ts" not in data:
            return  # not ours (the burst goes to other users anyway)
        if data["i"] in seen:
            duplicates += 1
            return
        seen.add(data["i"])
        latencies_ms.append((received_us - data["ts"]) / 1000)

    devices = Devices(on_entry)
    await devices.connect(ws_url, users)
    limits = httpx.Limits(max_connections=PRODUCER_CONNECTIONS, max_keepalive_connections=PRODUCER_CONNECTIONS)
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=PRODUCER_HEADERS, limits=limits, timeout=30) as client:
            api_ms, statuses, took = await _steady(client, users, args.latency_count, args.latency_rate)
            # Whatever has not arrived 10 s after the last POST counts as lost.
            await devices.wait_total(args.latency_count, 10)
            lost = args.latency_count - len(seen)
            burst = await _burst(client, args.burst_count) if args.burst_count else None
    finally:
        closed = devices.closed_count()  # before we close them ourselves
        await devices.close()

    result.add("enqueue→device p50 / p95 / p99 / max (ms)", " / ".join(
        f"{percentile(latencies_ms, q):.1f}" for q in (50, 95, 99, 100)))
    result.add("delivered / sent (lost, duplicates)", f"{len(seen)} / {args.latency_count} ({lost}, {duplicates})")
    result.add("POST rate achieved (req/s)", f"{args.latency_count / took:.0f}")
    result.add("POST latency p50 / p99 (ms)", f"{percentile(api_ms, 50):.1f} / {percentile(api_ms, 99):.1f}")
    rejected = sum(1 for s in statuses if s != 202)
    if rejected:
        result.problems.append(f"latency: {rejected} POSTs not answered 202: {sorted(set(statuses))}")
    if lost:
        result.problems.append(f"latency: {lost} of {args.latency_count} notifications never reached their device")
    if closed:
        result.problems.append(f"latency: {closed} devices were closed by the server during the run")
    if burst is not None:
        rate, failed = burst
        result.add(f"enqueue API burst, {args.burst_count} POSTs, {PRODUCER_CONNECTIONS} conns (req/s)", f"{rate:.0f}")
        if failed:
            result.problems.append(f"burst: {failed} POSTs not answered 202")


def run(args: argparse.Namespace) -> Result:
    """Run the benchmark in a fresh stack; the result rows."""
    result = Result(NAME, f"{args.latency_count} notifications, 1 recipient each, "
                          f"{args.latency_devices} devices, {args.latency_rate:g}/s")
    with stack(args.database_url, args.workers, args.pin) as running:
        try:
            asyncio.run(asyncio.wait_for(_measure(running.service.ws_url, running.service.url, args, result), args.timeout))
        except TimeoutError:
            result.problems.append(f"latency: did not finish within {args.timeout:g}s")
        result.problems.extend(running.problems())
    return result
