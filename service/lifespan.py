"""What a service process holds open: the store, the queue, pub/sub and the hub."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from arq.connections import ArqRedis
from redis.asyncio import ConnectionPool, Redis

from service.broker.redis import RedisPublisher, RedisSubscriptions
from service.gateway.hub import Hub
from service.metrics import Metrics
from service.settings import Settings
from service.store.engine import Database
from service.store.repository import Repository
from service.store.topics import TopicStore

log = logging.getLogger("tidings")


@dataclass
class Services:
    """Everything a request handler may use, built once per process."""

    settings: Settings
    repository: Repository
    arq: ArqRedis
    publisher: RedisPublisher
    hub: Hub | None
    subscriptions: RedisSubscriptions | None
    metrics: Metrics
    topics: TopicStore
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set on SIGTERM (``service.drain``): long-polls answer with what they have, new streams
    are turned away and readiness says ``draining``."""


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Open the store, the queue connection and (for a gateway) the subscription stream."""
    redis_url = settings.require_redis("tidings serve")
    database = Database.connect(settings.database_url)
    repository = Repository(database)
    # No ping at start: a Redis outage must not stop the API from accepting (degraded mode).
    arq = ArqRedis(
        connection_pool=ConnectionPool.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5),
        default_queue_name=settings.queue_name,
    )
    # Publish where the gateways subscribe: the pub/sub Redis may be a separate server.
    pubsub_redis = Redis.from_url(settings.pubsub_redis_url) if settings.pubsub_redis_url else None
    publisher = RedisPublisher(pubsub_redis or arq)
    hub: Hub | None = None
    subscriptions: RedisSubscriptions | None = None
    if settings.serves_gateway:
        hub = Hub(repository, settings.app_id, settings.positioning_interval_s)
        subscriptions = RedisSubscriptions(
            settings.pubsub_url or redis_url,
            hub.on_message,
            hub.on_reset,
            control_channel=f"{settings.channel_prefix}:control:{os.getpid()}",
        )
        hub.attach(subscriptions)
        await subscriptions.start()
        hub.start()
    try:
        metrics = Metrics()
        if hub is not None:
            metrics.streams.set_function(lambda: hub.stream_count)
        yield Services(settings, repository, arq, publisher, hub, subscriptions, metrics, TopicStore(database))
    finally:
        if hub is not None:
            await hub.stop()
        if subscriptions is not None:
            await subscriptions.stop()
        if pubsub_redis is not None:
            await pubsub_redis.aclose()
        await arq.aclose(close_connection_pool=True)
        await database.dispose()
