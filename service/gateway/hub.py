"""The process-local registry of live streams, fed by the one subscription connection.

The hub never awaits a stream: a message is offered to each of its user's
streams, which buffer it or note that they must read the store. A positioning
pass (every ``positioning_interval_s``, and after the subscription connection
reconnects) compares each user's head seq in the store with what the streams
sent, in batches, so a publish that never arrived is still delivered.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from typing import TYPE_CHECKING

from service.aio import cancel_and_wait
from service.domain.codes import CloseCode
from service.errors import TidingsError
from service.gateway.stream import StreamClosed
from service.gateway.waiter import Waiter

if TYPE_CHECKING:
    from service.broker.base import Subscriptions
    from service.gateway.stream import Stream
    from service.store.repository import Repository

log = logging.getLogger("tidings.gateway")

POSITIONING_BATCH = 500
RESET_SPREAD_S = 1.0
"""After the pub/sub connection came back, the catch-up of every stream is spread over this."""
RESET_SLICES = 20
DRAIN_STEP_S = 0.05
"""Closes during a drain go out in slices this far apart."""
DRAIN_GRACE_S = 2.0
"""How long a drain waits, after the last close, for the streams to end."""


class Hub:
    """user channel -> live streams on this process."""

    def __init__(self, repository: Repository, app_id: str, positioning_interval_s: float) -> None:
        self._repo = repository
        self._app_id = app_id
        self._interval = positioning_interval_s
        self._streams: dict[str, set[Stream]] = defaultdict(set)
        self._subscriptions: Subscriptions | None = None
        self._task: asyncio.Task[None] | None = None

    def attach(self, subscriptions: Subscriptions) -> None:
        """Use ``subscriptions`` for joins and leaves (set once at startup)."""
        self._subscriptions = subscriptions

    @property
    def stream_count(self) -> int:
        """How many streams are registered."""
        return sum(len(streams) for streams in self._streams.values())

    async def join(self, channel: str, stream: Stream) -> None:
        """Register ``stream`` and return once its channel is subscribed."""
        assert self._subscriptions is not None, "Hub.attach() was not called"
        self._streams[channel].add(stream)
        await self._subscriptions.subscribe(channel)

    async def leave(self, channel: str, stream: Stream) -> None:
        """Forget ``stream``; unsubscribe its channel when it was the last one."""
        streams = self._streams.get(channel)
        if streams is None:
            return
        streams.discard(stream)
        if not streams:
            del self._streams[channel]
            assert self._subscriptions is not None
            await self._subscriptions.unsubscribe(channel)

    def on_message(self, channel: str, epoch: int, seq: int, frame: bytes) -> None:
        """Offer a published entry to every stream of its channel (never blocks)."""
        for stream in tuple(self._streams.get(channel, ())):
            stream.offer(epoch, seq, frame)

    async def on_reset(self) -> None:
        """Messages may have been lost: check every stream against the store, spread out.

        Every stream of the process may be behind at once; poking them in slices over
        ``RESET_SPREAD_S`` spreads their catch-up reads instead of sending all to the store at once.
        """
        await self.position_all(spread_s=min(RESET_SPREAD_S, self._interval))

    async def position_all(self, spread_s: float = 0.0) -> None:
        """Compare every live stream's last seq with its inbox head; poke the ones behind.

        With ``spread_s``, users are taken in random order and in slices spread over that time.
        """
        by_user: dict[str, list[Stream]] = defaultdict(list)
        for streams in list(self._streams.values()):
            for stream in streams:
                by_user[stream.user_id].append(stream)
        users = list(by_user)
        size = POSITIONING_BATCH
        if spread_s > 0:
            random.shuffle(users)
            size = max(1, min(POSITIONING_BATCH, -(-len(users) // RESET_SLICES)))
        loop = asyncio.get_running_loop()
        start, slices = loop.time(), max(1, -(-len(users) // size))
        for number, first in enumerate(range(0, len(users), size)):
            batch = users[first : first + size]
            try:
                heads = await self._repo.heads(self._app_id, batch)
            except TidingsError as exc:
                log.warning("positioning skipped: %s", exc.detail)
                return
            for user, head in heads.items():
                for stream in by_user[user]:
                    stream.behind(head)
            if spread_s > 0:
                await asyncio.sleep(max(0.0, start + spread_s * (number + 1) / slices - loop.time()))

    async def drain(self, window_s: float) -> None:
        """Close every stream with 1012 (and answer every long-poll), spread over ``window_s``.

        Called on SIGTERM once the listener is closed: the devices reconnect to another
        instance, and spreading the closes spreads their reconnects and replays there.
        """
        members = [member for members in self._streams.values() for member in members]
        for waiter in [member for member in members if isinstance(member, Waiter)]:
            waiter.close(None)  # a long-poll answers at once: it holds nothing to spread
        members = [member for member in members if not isinstance(member, Waiter)]
        if not members:
            return
        random.shuffle(members)
        loop = asyncio.get_running_loop()
        start, steps = loop.time(), max(1, int(window_s / DRAIN_STEP_S))
        for step in range(steps):
            await asyncio.sleep(max(0.0, start + step * window_s / steps - loop.time()))
            for member in members[step * len(members) // steps : (step + 1) * len(members) // steps]:
                member.close(StreamClosed(CloseCode.SERVICE_RESTART, "service restarting; reconnect"))
        # Give the closes a moment to reach the sockets; stragglers are cut by the server.
        deadline = loop.time() + DRAIN_GRACE_S
        while self.stream_count and loop.time() < deadline:
            await asyncio.sleep(0.05)

    async def run_positioning(self) -> None:
        """Run :meth:`position_all` forever, every ``positioning_interval_s``."""
        while True:
            await asyncio.sleep(self._interval)
            await self.position_all()

    def start(self) -> None:
        """Start the positioning loop."""
        self._task = asyncio.create_task(self.run_positioning(), name="tidings-positioning")

    async def stop(self) -> None:
        """Stop the positioning loop."""
        await cancel_and_wait(self._task)
