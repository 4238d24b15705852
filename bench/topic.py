"""Topic fan-out: one notification to a topic of N subscribers, repeated R times.

The subscribers are added through the API (in requests of 1,000). The clock
runs from just before the POST until the status says ``delivered`` (every
inbox entry stored); a few of the subscribers hold a WebSocket, and the one
whose chunk is stored last must have it live too.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import httpx

from bench.common import PRODUCER_HEADERS, Devices, Result, median, stack

NAME = "topic"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's flags."""
    group = parser.add_argument_group("topic")
    group.add_argument("--topic-subscribers", type=int, default=50_000, help="subscribers (default 50000)")
    group.add_argument("--topic-rounds", type=int, default=3, help="rounds; the median is reported (default 3)")


def quick(args: argparse.Namespace) -> None:
    """Shrink to a smoke size."""
    args.topic_subscribers = 2_000


async def _measure(ws_url: str, base_url: str, args: argparse.Namespace, result: Result) -> None:
    users = [f"s{i:07d}" for i in range(args.topic_subscribers)]
    seconds: list[float] = []
    async with httpx.AsyncClient(base_url=base_url, headers=PRODUCER_HEADERS, timeout=60) as client:
        for start in range(0, len(users), 1000):
            response = await client.post("/v1/topics/bench/subscribers", json={"users": users[start : start + 1000]})
            response.raise_for_status()
        devices = Devices()
        await devices.connect(ws_url, [users[0], users[-1]], timeout=30)
        try:
            body = {"recipients": {"topic": "bench"}, "type": "bench", "title": "t"}
            for round_no in range(args.topic_rounds):
                target = devices.total + 2
                started = time.perf_counter()
                response = await client.post("/v1/notifications", json=body)
                notification_id = response.json()["id"]
                while True:
                    current = (await client.get(f"/v1/notifications/{notification_id}")).json()
                    if current["status"] == "delivered":
                        break
                    if time.perf_counter() - started > 120:
                        result.problems.append(f"topic round {round_no}: not delivered after 120 s: {current}")
                        break
                    await asyncio.sleep(0.02)
                elapsed = time.perf_counter() - started
                if not await devices.wait_total(target, 10):
                    result.problems.append(f"topic round {round_no}: a connected subscriber did not get it live")
                if current["delivered"] != len(users):
                    result.problems.append(f"topic round {round_no}: {current['delivered']} entries for {len(users)}")
                seconds.append(elapsed)
                await asyncio.sleep(0.5)
        finally:
            await devices.close()
    if seconds:
        mid = median(seconds)
        result.add("time until every entry was stored, median (s)", f"{mid:.2f}")
        result.add("entries/s, median round", f"{len(users) / mid:,.0f}")
        result.add("rounds (s)", ", ".join(f"{s:.2f}" for s in seconds))


def run(args: argparse.Namespace) -> Result:
    """Run the benchmark in a fresh stack; the result rows."""
    result = Result(NAME, f"1 notification to a topic of {args.topic_subscribers} subscribers, {args.topic_rounds} rounds")
    with stack(args.database_url, args.workers, args.pin) as running:
        try:
            asyncio.run(asyncio.wait_for(_measure(running.service.ws_url, running.service.url, args, result), args.timeout))
        except TimeoutError:
            result.problems.append(f"topic: did not finish within {args.timeout:g}s")
        result.problems.extend(running.problems())
    return result
