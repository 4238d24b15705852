"""What every job finds in its arq ``ctx``: built in ``on_startup``, closed in ``on_shutdown``."""

from __future__ import annotations

from typing import Any, TypedDict

from service.broker.redis import RedisPublisher
from service.settings import Settings
from service.store.engine import Database
from service.store.repository import Repository


class JobContext(TypedDict):
    """The typed part of arq's ctx (arq adds ``redis``, ``job_try`` and others)."""

    settings: Settings
    database: Database
    repository: Repository
    publisher: RedisPublisher


async def startup(ctx: dict[str, Any]) -> None:
    """Open the store and the publisher (over arq's own Redis pool)."""
    settings: Settings = ctx["settings"]
    database = Database.connect(settings.database_url)
    ctx["database"] = database
    ctx["repository"] = Repository(database)
    ctx["publisher"] = RedisPublisher(ctx["redis"])


async def shutdown(ctx: dict[str, Any]) -> None:
    """Close the store."""
    database: Database | None = ctx.get("database")
    if database is not None:
        await database.dispose()
