"""What every job finds in its arq ``ctx``: built in ``on_startup``, closed in ``on_shutdown``."""

from __future__ import annotations

from typing import Any, TypedDict

from redis.asyncio import Redis

from service.broker.redis import RedisPublisher
from service.settings import Settings
from service.store.engine import Database
from service.store.repository import Repository
from service.store.retention import RetentionStore


class JobContext(TypedDict):
    """The typed part of arq's ctx (arq adds ``redis``, ``job_try`` and others)."""

    settings: Settings
    database: Database
    repository: Repository
    retention: RetentionStore
    publisher: RedisPublisher


async def startup(ctx: dict[str, Any]) -> None:
    """Open the store (unless the process shares one) and the publisher (over arq's own pool)."""
    settings: Settings = ctx["settings"]
    if "repository" not in ctx:
        database = Database.connect(settings.database_url)
        ctx["database"] = database
        ctx["repository"] = Repository(database)
        ctx["retention"] = RetentionStore(database)
        ctx["owns_database"] = True
    # Publish where the gateways subscribe: the pub/sub Redis may be a separate server.
    if settings.pubsub_redis_url:
        ctx["pubsub_redis"] = Redis.from_url(settings.pubsub_redis_url)
    ctx["publisher"] = RedisPublisher(ctx.get("pubsub_redis") or ctx["redis"])


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close the pub/sub connection, and the store unless the process shares it."""
    if ctx.get("pubsub_redis") is not None:
        await ctx["pubsub_redis"].aclose()
    database: Database | None = ctx.get("database")
    if database is not None and ctx.get("owns_database"):
        await database.dispose()
