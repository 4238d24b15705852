"""A long-poll's stand-in on the hub: woken by the first message on its user's channel.

It holds nothing but an event while it waits: no database connection, no
transaction. The request reads the store again when it wakes (a message is a
hint, never the answer).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from service.domain.cursor import Cursor


class Waiter:
    """Registered with the hub like a stream, for one ``GET …?wait=`` request."""

    def __init__(self, user_id: str, epoch: int, after_seq: int) -> None:
        self.user_id = user_id
        self._epoch = epoch
        self._after_seq = after_seq
        self._woken = asyncio.Event()

    def offer(self, epoch: int, seq: int, frame: bytes) -> None:
        """Any message for the user (an entry, a state change, a new epoch): read again."""
        self._woken.set()

    def close(self, _reason: object) -> None:
        """The hub drains (SIGTERM): end the wait now; the client polls again elsewhere."""
        self._woken.set()

    def behind(self, head: Cursor) -> None:
        """A positioning pass: wake only when the store holds something newer."""
        if head.epoch != self._epoch or head.seq > self._after_seq:
            self._woken.set()

    async def wait(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for a wake-up; ``True`` if one came."""
        try:
            await asyncio.wait_for(self._woken.wait(), timeout_s)
        except TimeoutError:
            return False
        self._woken.clear()
        return True
