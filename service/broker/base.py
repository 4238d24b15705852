"""The broker roles: publishing inbox hints, and one subscription stream per process.

Pub/sub messages are hints, never the truth: a lost, late or reordered one
costs latency, because the gateway fills any gap from the store. A message is
``b"<epoch> <seq> <frame>"`` where ``frame`` is the ready-to-send JSON text of a
``notification`` frame, so the gateway orders without parsing JSON.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

STATE_SEQ = 0
"""The seq of a message that carries a ``state`` frame (read-state change): not an entry, not
ordered. Seq 0 with an empty frame announces a new epoch (an erased inbox)."""

MessageHandler = Callable[[str, int, int, bytes], None]
"""Called with (channel, epoch, seq, frame) for each message; must not block."""
ResetHandler = Callable[[], Awaitable[None]]
"""Called after the subscription stream reconnected: messages may have been lost."""


@dataclass(frozen=True, slots=True)
class Hint:
    """One published entry: its channel, inbox epoch, seq and encoded frame."""

    channel: str
    epoch: int
    seq: int
    frame: bytes

    def encode(self) -> bytes:
        """The wire form of the message body."""
        return b"%d %d " % (self.epoch, self.seq) + self.frame


def decode_message(data: bytes) -> tuple[int, int, bytes] | None:
    """Split a message body into (epoch, seq, frame); ``None`` when malformed."""
    parts = data.split(b" ", 2)
    if len(parts) != 3:
        return None
    try:
        return int(parts[0]), int(parts[1]), parts[2]
    except ValueError:
        return None


class Publisher(Protocol):
    """Publishes hints after their entries committed."""

    async def publish(self, hints: Sequence[Hint]) -> None:
        """Publish every hint (pipelined); raise BrokerUnavailable when Redis is down."""
        ...


class Subscriptions(Protocol):
    """The process's one subscription stream."""

    async def subscribe(self, channel: str) -> None:
        """Subscribe and return once the broker acknowledged it."""
        ...

    async def unsubscribe(self, channel: str) -> None:
        """Stop receiving a channel."""
        ...
