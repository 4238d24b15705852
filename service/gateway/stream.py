"""One device's stream: replay from a cursor, then live entries in seq order.

The stream knows nothing of sockets: it is handed a ``send`` coroutine. The hub
offers it published entries without ever waiting on it; the stream's own task
(``run``) is the only writer, so frames never interleave.

Order of a resume (the caller has subscribed the user's channel, and Redis
acknowledged it, before ``run`` starts, so nothing committed after the replay's
last read can be missed):

1. read the inbox head; a cursor of another epoch ends the stream with 4009;
2. replay from the store after the cursor, page by page, each page awaited on
   the socket; live messages arriving meanwhile are only hints (their highest
   seq is remembered, their bytes dropped);
3. go live and send ``ready``; from then on each live entry is sent, dropped
   (seq <= last_sent) or preceded by a read of the gap from the store.

``state`` frames (read-state changes, published with seq 0) are not entries:
they are queued apart and sent at the next point between entries, replay included.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from service.broker.base import STATE_SEQ
from service.domain.codes import CloseCode, ErrorCode
from service.domain.cursor import Cursor
from service.domain.frames import PING, error_frame, notification_frame, ready_frame
from service.domain.ordering import Verdict, judge
from service.errors import StoreUnavailable, TidingsError

if TYPE_CHECKING:
    from service.auth.tokens import Principal
    from service.store.repository import Repository

log = logging.getLogger("tidings.gateway")

Send = Callable[[bytes], Awaitable[None]]

STORE_RETRY_S = 1.0
"""While live, how soon a stream reads the store again after it did not answer."""


class StreamClosed(Exception):
    """The stream must end with ``code`` (after an optional error frame)."""

    def __init__(self, code: int, reason: str, error: bytes | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.error = error


class Stream:
    """Ordering, replay and gap filling for one connection."""

    def __init__(
        self,
        principal: Principal,
        repository: Repository,
        send: Send,
        *,
        page: int,
        max_buffered_bytes: int,
        ping_interval_s: float,
    ) -> None:
        self.principal = principal
        self.user_id = principal.user_id
        self._repo = repository
        self._send = send
        self._page = page
        self._budget = max_buffered_bytes
        self._ping_interval = ping_interval_s
        self.epoch = 0
        self.last_sent = 0
        self._buffering = False
        """True once live: published frames are queued; before that they are only hints."""
        self._pending: deque[tuple[int, int, bytes]] = deque()
        self._pending_bytes = 0
        self._hinted = 0
        """Highest seq announced while not buffering (or behind the store head)."""
        self._states: deque[bytes] = deque()
        self._state_bytes = 0
        self._epoch_changed = False
        self.truncated = False
        """Whether the replay found entries missing after the cursor (removed by retention)."""
        self._wake = asyncio.Event()
        self._closing: StreamClosed | None = None

    # -- called by the hub and the socket reader (never block) ------------------------

    def offer(self, epoch: int, seq: int, frame: bytes) -> None:
        """A published entry for this user."""
        if self._closing is not None:
            return
        if seq == STATE_SEQ and frame:
            self._offer_state(epoch, frame)
        elif epoch != self.epoch and self.epoch:
            self._epoch_changed = True
        elif not self._buffering:
            self._hinted = max(self._hinted, seq)
        elif self._pending_bytes + len(frame) > self._budget:
            self.close(StreamClosed(CloseCode.TOO_SLOW, "too slow: the socket is not draining"))
        else:
            self._pending.append((epoch, seq, frame))
            self._pending_bytes += len(frame)
        self._wake.set()

    def _offer_state(self, epoch: int, frame: bytes) -> None:
        if self.epoch and epoch != self.epoch:
            return  # about an inbox this stream no longer shows
        if self._state_bytes + len(frame) > self._budget:
            self.close(StreamClosed(CloseCode.TOO_SLOW, "too slow: the socket is not draining"))
            return
        self._states.append(frame)
        self._state_bytes += len(frame)

    def behind(self, head: Cursor) -> None:
        """The store's head for this inbox (from a positioning pass)."""
        if head.epoch != self.epoch:
            self._epoch_changed = True
            self._wake.set()
        elif head.seq > self.last_sent:
            self._hinted = max(self._hinted, head.seq)
            self._wake.set()

    def close(self, reason: StreamClosed) -> None:
        """Ask the stream to end (first reason wins)."""
        if self._closing is None:
            self._closing = reason
        self._wake.set()

    def refresh(self, principal: Principal) -> None:
        """A fresh token for the same user extends the stream's life."""
        self.principal = principal
        self._wake.set()

    # -- the stream's own task --------------------------------------------------------

    async def run(self, cursor: Cursor | None) -> StreamClosed:
        """Replay, go live and send until the stream must close; return why."""
        try:
            await self._start(cursor)
            await self._live()
        except StreamClosed as closed:
            return closed
        except TidingsError as exc:
            log.warning("stream of %s ended: %s", self.user_id, exc.detail)
            return StreamClosed(
                CloseCode.SERVICE_RESTART, "store unavailable", error_frame(exc.code, exc.detail)
            )
        assert self._closing is not None
        return self._closing

    async def _start(self, cursor: Cursor | None) -> None:
        app_id = self.principal.app_id
        head, floor = await self._repo.head_and_floor(app_id, self.user_id)
        self.epoch = head.epoch
        if cursor is None:
            self.last_sent = head.seq
        else:
            if cursor.epoch != head.epoch or cursor.seq > head.seq:
                raise StreamClosed(
                    CloseCode.CURSOR_RESET,
                    "cursor reset",
                    error_frame(ErrorCode.CURSOR_RESET, "the inbox was reset; restart from the head"),
                )
            self.last_sent = cursor.seq
            self._hinted = head.seq
            self.truncated = cursor.seq < floor  # retention removed entries this device had not seen
            await self._catch_up()
        # No await between the last store read and this switch: no hint can slip between.
        self._buffering = True
        # As of last_sent: every entry after it comes live, and the device adds those itself.
        unread = await self._repo.unread_count(app_id, self.user_id, up_to_seq=self.last_sent)
        await self._send(ready_frame(Cursor(self.epoch, self.last_sent).encode(), unread, self.truncated))

    async def _catch_up(self) -> None:
        """Read from the store until ``last_sent`` reaches every seq hinted so far."""
        while self._hinted > self.last_sent:
            target = self._hinted
            while self.last_sent < target:
                entries = await self._repo.entries_after(
                    self.principal.app_id, self.user_id, self.epoch, self.last_sent, self._page, up_to=target
                )
                if not entries:
                    # Nothing visible up to the target (expired, or removed by retention): skip ahead.
                    self.last_sent = max(self.last_sent, target)
                    break
                for entry in entries:
                    await self._send(notification_frame(entry))
                    self.last_sent = entry.seq
                await self._send_states()
                self._check_closing()

    async def _live(self) -> None:
        next_ping = time.monotonic() + self._ping_interval
        retry_at = math.inf
        while True:
            timeout = max(0.0, min(next_ping, self.principal.deadline, retry_at) - time.monotonic())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
            self._wake.clear()
            self._check_closing()
            now = time.monotonic()
            if now >= self.principal.deadline:
                raise StreamClosed(
                    CloseCode.TOKEN_EXPIRED,
                    "token expired",
                    error_frame(ErrorCode.UNAUTHORIZED, "token expired; reconnect with a fresh one"),
                )
            if now >= next_ping:
                await self._send(PING)
                next_ping = now + self._ping_interval
            await self._send_states()
            try:
                if self._epoch_changed:
                    await self._check_epoch()
                await self._drain()
                retry_at = math.inf
            except StoreUnavailable as exc:
                # Keep the socket: what the store holds waits there; read it again shortly.
                log.warning("stream of %s waits for the store: %s", self.user_id, exc.detail)
                retry_at = time.monotonic() + STORE_RETRY_S

    async def _send_states(self) -> None:
        while self._states:
            frame = self._states.popleft()
            self._state_bytes -= len(frame)
            await self._send(frame)

    async def _drain(self) -> None:
        while self._pending:
            batch = sorted(self._pending, key=lambda item: item[1])
            self._pending.clear()
            self._pending_bytes = 0
            # Should the store fail half-way, what the batch announced stays owed.
            self._hinted = max(self._hinted, batch[-1][1]) if batch[-1][0] == self.epoch else self._hinted
            for epoch, seq, frame in batch:
                if epoch != self.epoch:
                    await self._check_epoch()
                    continue
                verdict = judge(self.last_sent, seq)
                if verdict is Verdict.SEND:
                    await self._send(frame)
                    self.last_sent = seq
                elif verdict is Verdict.FILL:
                    await self._fill(seq)
            self._check_closing()
        if self._hinted > self.last_sent:
            await self._fill(self._hinted)

    async def _fill(self, up_to: int) -> None:
        """Send what the store holds in (last_sent, up_to]; live frames become hints meanwhile."""
        self._hinted = max(self._hinted, up_to)
        self._buffering = False
        try:
            await self._catch_up()
        finally:
            # Anything queued before the switch is covered by the store reads above or later.
            for _epoch, seq, _frame in self._pending:
                self._hinted = max(self._hinted, seq)
            self._pending.clear()
            self._pending_bytes = 0
            self._buffering = True
        if self._hinted > self.last_sent:
            self._wake.set()

    async def _check_epoch(self) -> None:
        head = await self._repo.head(self.principal.app_id, self.user_id)
        self._epoch_changed = False
        if head.epoch != self.epoch:
            raise StreamClosed(
                CloseCode.CURSOR_RESET,
                "cursor reset",
                error_frame(ErrorCode.CURSOR_RESET, "the inbox was reset; restart from the head"),
            )

    def _check_closing(self) -> None:
        if self._closing is not None:
            raise self._closing
