"""The concurrency property scenario of the test suite, at a larger size.

Producers send to overlapping users while pollers advance cursors and WebSocket
devices reconnect with theirs; the verdict is the delivery contract's (seqs
1..n, nothing twice, nothing skipped, devices in order). Reported: the scale,
the time it took and the number of violations (0 is the only good answer).
"""

from __future__ import annotations

import argparse
import asyncio
import random

from bench.common import Result, stack
from tests import scenarios

NAME = "contract"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This benchmark's flags."""
    group = parser.add_argument_group("contract")
    group.add_argument("--contract-producers", type=int, default=8, help="producer tasks (default 8)")
    group.add_argument("--contract-notifications", type=int, default=150, help="per producer (default 150)")
    group.add_argument("--contract-users", type=int, default=40, help="users = devices = pollers (default 40)")
    group.add_argument("--contract-workers", type=int, default=4, help="worker processes (default 4)")
    group.add_argument("--contract-seed", type=int, default=None, help="schedule seed (default: random)")


def quick(args: argparse.Namespace) -> None:
    """Shrink to a smoke size."""
    args.contract_producers, args.contract_notifications, args.contract_users = 2, 20, 6


def run(args: argparse.Namespace) -> Result:
    """Run the scenario once."""
    seed = args.contract_seed if args.contract_seed is not None else random.randrange(1 << 30)
    scale = scenarios.Scale(
        producers=args.contract_producers,
        notifications_per_producer=args.contract_notifications,
        users=args.contract_users,
        max_recipients=8,
        reconnects_per_device=5,
    )
    result = Result(NAME, f"{scale.producers} producers × {scale.notifications_per_producer} notifications, "
                          f"{scale.users} users (1-8 recipients each), {args.contract_workers} workers, seed {seed}")
    with stack(args.database_url, args.contract_workers, args.pin) as running:
        outcome = asyncio.run(scenarios.run([running.service.url], seed, scale, settle_timeout=args.timeout))
        result.problems.extend(running.problems())
    entries = sum(len(ids) for ids in outcome.sent.values())
    result.add("inbox entries checked", f"{entries}")
    result.add("time (s)", f"{outcome.seconds:.1f}")
    result.add("contract violations", f"{len(outcome.problems)}")
    result.problems.extend(f"seed {seed}: {p}" for p in outcome.problems[:20])
    return result
