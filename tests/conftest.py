"""Shared fixtures: a real Redis, a fresh SQL database per test (SQLite, and PostgreSQL when
configured), and a deployment (prefix, queue, credentials) that the test's processes share.

``TIDINGS_TEST_REDIS_URL`` picks a Redis (else the suite starts its own redis-server);
``TIDINGS_TEST_DATABASE_URL`` a PostgreSQL server, in which each test creates and drops its
own database. Without it the ``pg`` variants are skipped and the summary says so.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from sqlalchemy.engine import make_url

from service.store.migrate import upgrade
from tests.harness import Deployment, RedisServer, free_port

PG_URL = os.environ.get("TIDINGS_TEST_DATABASE_URL", "")
PG_SKIP_REASON = "PostgreSQL variant skipped: TIDINGS_TEST_DATABASE_URL is not set"


def pytest_report_header() -> list[str]:
    """Say which servers the run uses."""
    return [
        f"tidings: redis={os.environ.get('TIDINGS_TEST_REDIS_URL') or 'own redis-server'} "
        f"postgresql={'yes' if PG_URL else 'no (pg variants skipped)'}"
    ]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Repeat loudly what was not tested."""
    if not PG_URL:
        terminalreporter.write_line(f"NOTE: {PG_SKIP_REASON}; every pg-parametrized test was skipped.", yellow=True)
    from tests.faults.rig import REPORTS

    if REPORTS:
        terminalreporter.section("fault suite: lost / duplicated / out of order, recovery per device")
        for line in REPORTS:
            if line.strip():
                terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis URL for this run (the machine's, or a redis-server started here)."""
    configured = os.environ.get("TIDINGS_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    server = RedisServer(free_port(), Path(tempfile.mkdtemp(prefix="tidings-redis-")))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def _pg_url(database: str) -> str:
    url = make_url(PG_URL).set(drivername="postgresql+asyncpg", database=database)
    return url.render_as_string(hide_password=False)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    admin = make_url(_pg_url(make_url(PG_URL).database or "postgres"))
    connection = await asyncpg.connect(
        host=admin.host, port=admin.port, user=admin.username, password=admin.password, database=admin.database
    )
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


@pytest.fixture(params=["sqlite", pytest.param("pg", marks=pytest.mark.pg)])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A new, migrated database for one test: a SQLite file, or a PostgreSQL database of its own."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'tidings.db'}"
        await asyncio.to_thread(upgrade, url)
        yield url
        return
    if not PG_URL:
        pytest.skip(PG_SKIP_REASON)
    name = "tidings_test_" + secrets.token_hex(6)
    await _pg_admin(f'CREATE DATABASE "{name}"')
    try:
        url = _pg_url(name)
        await asyncio.to_thread(upgrade, url)
        yield url
    finally:
        await _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def deployment(redis_url: str, database_url: str) -> AsyncIterator[Deployment]:
    """One deployment's shared settings; its Redis keys are removed afterwards."""
    deployment = Deployment(redis_url=redis_url, database_url=database_url)
    yield deployment
    redis = Redis.from_url(redis_url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"*{deployment.prefix}*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()
