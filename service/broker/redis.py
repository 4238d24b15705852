"""Redis pub/sub: a pipelined publisher, and one subscription connection per process."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from service.aio import cancel_and_wait
from service.broker.base import Hint, MessageHandler, ResetHandler, decode_message
from service.errors import BrokerUnavailable

log = logging.getLogger("tidings.broker")


class RedisPublisher:
    """Publishes hints in one pipeline round trip."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis

    async def publish(self, hints: Sequence[Hint]) -> None:
        """Publish every hint; raise :class:`BrokerUnavailable` when Redis is down."""
        if not hints:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for hint in hints:
                    pipe.publish(hint.channel, hint.encode())
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(f"redis publish failed: {exc}") from exc


class RedisSubscriptions:
    """The single pub/sub connection of a service process.

    One reader task owns the connection's input: it hands each message to
    ``on_message`` and resolves the futures of pending SUBSCRIBEs when their
    acknowledgement arrives. When the connection fails it reconnects with
    jittered backoff, resubscribes every channel, and calls ``on_reset`` so each
    stream catches up from the store (messages published meanwhile are lost).
    """

    def __init__(
        self, url: str, on_message: MessageHandler, on_reset: ResetHandler, *, control_channel: str
    ) -> None:
        self._url = url
        self._on_message = on_message
        self._on_reset = on_reset
        self._control = control_channel
        self._channels: set[str] = set()
        self._acks: dict[str, asyncio.Future[None]] = {}
        self._redis: Redis | None = None
        self._pubsub = None
        self._task: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()

    async def start(self) -> None:
        """Open the connection and start reading; fails if Redis is unreachable."""
        await self._connect()
        self._task = asyncio.create_task(self._read_forever(), name="tidings-pubsub")

    async def stop(self) -> None:
        """Stop reading and close the connection."""
        await cancel_and_wait(self._task)
        await self._close()

    @property
    def connected(self) -> bool:
        """Whether the subscription connection is up."""
        return self._connected.is_set()

    async def _connect(self) -> None:
        self._redis = Redis.from_url(self._url, health_check_interval=5, socket_connect_timeout=2)
        self._pubsub = self._redis.pubsub()
        # Subscribing the control channel opens the connection, so reads have one.
        await self._pubsub.subscribe(self._control, *self._channels)
        self._connected.set()

    async def _close(self) -> None:
        self._connected.clear()
        pubsub, redis = self._pubsub, self._redis
        self._pubsub = self._redis = None
        for closer in (pubsub, redis):
            if closer is not None:
                try:
                    await closer.aclose()
                except (RedisError, OSError):
                    pass

    async def subscribe(self, channel: str) -> None:
        """Subscribe ``channel`` and wait for Redis's acknowledgement."""
        future = self._acks.get(channel)
        if future is None:
            self._channels.add(channel)
            future = asyncio.get_running_loop().create_future()
            self._acks[channel] = future
            await self._send("subscribe", channel)
        await asyncio.shield(future)

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving ``channel``; never waits for a connection that is down."""
        self._channels.discard(channel)
        self._acks.pop(channel, None)
        if self._connected.is_set():  # else the reconnect simply does not resubscribe it
            await self._send("unsubscribe", channel)

    async def _send(self, command: str, channel: str) -> None:
        await self._connected.wait()
        try:
            assert self._pubsub is not None
            await getattr(self._pubsub, command)(channel)
        except (RedisError, OSError) as exc:
            # The reader notices the broken connection and resubscribes everything.
            log.warning("pubsub %s %s failed: %s", command, channel, exc)

    async def _read_forever(self) -> None:
        failures = 0
        while True:
            try:
                assert self._pubsub is not None
                message = await self._pubsub.get_message(timeout=1.0)
                failures = 0
                if message is not None:
                    self._dispatch(message)
            except (RedisError, OSError, AssertionError) as exc:
                log.warning("pubsub connection lost: %s", exc)
                await self._close()
                await self._reconnect(failures)
                failures += 1

    async def _reconnect(self, failures: int) -> None:
        attempt = failures
        while True:
            delay = random.uniform(0, min(5.0, 0.1 * 2**attempt))
            await asyncio.sleep(delay)
            try:
                await self._connect()
            except (RedisError, OSError) as exc:
                log.warning("pubsub reconnect failed: %s", exc)
                await self._close()
                attempt += 1
                continue
            log.info("pubsub reconnected; %d channels resubscribed", len(self._channels))
            # Acks for resubscribed channels arrive through the reader as usual.
            await self._on_reset()
            return

    def _dispatch(self, message: dict[str, object]) -> None:
        kind = message.get("type")
        channel = message.get("channel")
        if isinstance(channel, bytes):
            channel = channel.decode()
        if not isinstance(channel, str):
            return
        if kind == "message":
            data = message.get("data")
            if isinstance(data, bytes):
                parsed = decode_message(data)
                if parsed is not None:
                    self._on_message(channel, *parsed)
        elif kind == "subscribe":
            future = self._acks.get(channel)
            if future is not None and not future.done():
                future.set_result(None)
