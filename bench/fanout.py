"""Fan-out: one notification to D connected devices (one user each), repeated R times.

Each round is one POST with D recipients; the clock runs from just before the
POST until the last device has the entry. Reported: the median round's time
and deliveries/s (D / time), plus the spread over the rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from bench.common import PRODUCER_HEADERS, Devices, Result, median, stack

NAME = "fanout"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's flags."""
    group = parser.add_argument_group("fanout")
    group.add_argument("--fanout-devices", type=int, default=1000, help="connected devices = recipients (default 1000)")
    group.add_argument("--fanout-rounds", type=int, default=3, help="rounds; the median is reported (default 3)")


def quick(args: argparse.Namespace) -> None:
    """Shrink to a smoke size."""
    args.fanout_devices = 100


async def _measure(ws_url: str, base_url: str, args: argparse.Namespace, result: Result) -> None:
    users = [f"u{i}" for i in range(args.fanout_devices)]
    devices = Devices()
    connect_started = time.perf_counter()
    await devices.connect(ws_url, users, timeout=120)
    result.add("connect + ready, all devices (s)", f"{time.perf_counter() - connect_started:.2f}")
    seconds: list[float] = []
    try:
        async with httpx.AsyncClient(base_url=base_url, headers=PRODUCER_HEADERS, timeout=30) as client:
            await client.get("/health/live")  # open the keep-alive connection outside the clock
            body = {"recipients": {"users": users}, "type": "bench", "title": "t", "data": {"fanout": True}}
            for round_no in range(args.fanout_rounds):
                target = devices.total + len(users)
                started = time.perf_counter()
                response = await client.post("/v1/notifications", json=body)
                if response.status_code != 202:
                    result.problems.append(f"fanout round {round_no}: POST answered {response.status_code}: {response.text[:200]}")
                    continue
                if not await devices.wait_total(target, 30):
                    missing = target - devices.total
                    result.problems.append(f"fanout round {round_no}: {missing} of {len(users)} devices had nothing after 30 s")
                    continue
                seconds.append(time.perf_counter() - started)
                await asyncio.sleep(0.5)  # let the worker settle between rounds
    finally:
        closed = devices.closed_count()  # before we close them ourselves
        await devices.close()
    if seconds:
        mid = median(seconds)
        result.add("time until the last device had it, median (ms)", f"{mid * 1000:.0f}")
        result.add("deliveries/s, median round", f"{len(users) / mid:,.0f}")
        result.add("rounds (ms)", ", ".join(f"{s * 1000:.0f}" for s in seconds))
    if closed:
        result.problems.append(f"fanout: {closed} devices were closed by the server during the run")


def run(args: argparse.Namespace) -> Result:
    """Run the benchmark in a fresh stack; the result rows."""
    result = Result(NAME, f"1 notification × {args.fanout_devices} recipients, "
                          f"{args.fanout_devices} devices, {args.fanout_rounds} rounds")
    with stack(args.database_url, args.workers, args.pin) as running:
        try:
            asyncio.run(asyncio.wait_for(_measure(running.service.ws_url, running.service.url, args, result), args.timeout))
        except TimeoutError:
            result.problems.append(f"fanout: did not finish within {args.timeout:g}s")
        result.problems.extend(running.problems())
    return result
