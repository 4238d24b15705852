"""The delivery contract as a property under real concurrency (seeded; the seed is printed).

Rerun a failure with ``TIDINGS_TEST_SEED=<seed> make test``; ``make bench`` runs a larger size.
"""

from __future__ import annotations

import asyncio
import os
import random

import pytest

from tests import scenarios
from tests.harness import Deployment, Service, Worker, running

pytestmark = pytest.mark.e2e
SCALE = scenarios.Scale(producers=4, notifications_per_producer=60, users=16, max_recipients=5, reconnects_per_device=4)


async def test_gapless_exactly_once_in_order_under_concurrency(deployment: Deployment) -> None:
    seed = int(os.environ.get("TIDINGS_TEST_SEED") or random.randrange(1 << 30))
    print(f"\nconcurrency property: seed {seed}")
    services = [Service(deployment), Service(deployment)]
    workers = [Worker(deployment) for _ in range(4)]
    with running(*services, *workers):
        await asyncio.gather(*(s.wait_ready_async() for s in services))
        outcome = await scenarios.run([s.url for s in services], seed, SCALE)
    print(outcome.summary())
    assert not outcome.problems, f"seed {seed} (rerun with TIDINGS_TEST_SEED={seed}): {outcome.problems[:10]}"
    assert sum(len(ids) for ids in outcome.sent.values()) >= SCALE.producers * SCALE.notifications_per_producer
