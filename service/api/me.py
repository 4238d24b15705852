"""The user API: a user's own inbox, by cursor."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated

from litestar import get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter, PathParameter

from service.api.problems import documented
from service.api.schemas import EntryPage, StateChangeIn, StateChangeOut, UnreadCount
from service.auth.tokens import Principal
from service.domain import rules
from service.domain.channels import inbox_channel
from service.domain.cursor import Cursor, InvalidCursorError
from service.errors import CursorReset, InvalidCursor, InvalidRequest
from service.gateway.session import SUBSCRIBE_TIMEOUT_S
from service.gateway.waiter import Waiter
from service.lifespan import Services
from service.read_state import change_state
from service.store.inbox import EntryFilter, Page
from service.store.repository import Repository

_SECURITY = [{"userToken": []}]

LONG_POLL_FALLBACK_S = 1.0
"""How often a long-poll without pub/sub reads the store."""


def parse_cursor(text: str, field: str) -> Cursor:
    """Decode a client's cursor or raise :class:`InvalidCursor` naming the field."""
    try:
        return Cursor.decode(text)
    except InvalidCursorError as exc:
        raise InvalidCursor(f"{field} is not a valid cursor: {exc}", field=field) from None


@get(
    "/v1/me/notifications",
    security=_SECURITY,
    responses=documented(400, 401, 410, 503),
    tags=["user"],
    summary="Poll the inbox after a cursor",
    description=(
        "Entries after `after` in seq order (from the start of the inbox without it), or with "
        "`before` the history: the entry that cursor follows and older ones, newest first "
        "(pass the head cursor, e.g. from `ready` or a page, to start at the newest). "
        "An empty page's `next_cursor` is the cursor given (the head when none). "
        "`unread` and `archived` filter either way. Expired entries are never listed. "
        "A cursor from an erased inbox is 410 `cursor_reset`: restart without one."
    ),
)
async def list_notifications(
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    after: Annotated[str | None, Parameter(description="Entries after this cursor, oldest first.")] = None,
    before: Annotated[
        str | None,
        Parameter(description="History: the entry this cursor follows and older ones, newest first."),
    ] = None,
    limit: Annotated[int, Parameter(ge=1, le=rules.MAX_PAGE)] = rules.DEFAULT_PAGE,
    unread: Annotated[
        bool | None, Parameter(description="true: only unread entries; false: only read ones.")
    ] = None,
    archived: Annotated[
        bool | None, Parameter(description="true: only archived entries; false: only those not archived.")
    ] = None,
    wait: Annotated[
        int,
        Parameter(
            ge=0,
            le=rules.MAX_WAIT_S,
            description=(
                f"Long-poll: when nothing is there yet, wait up to this many seconds (at most {rules.MAX_WAIT_S}) "
                "and answer as soon as an entry arrives. No database connection is held while waiting."
            ),
        ),
    ] = 0,
) -> EntryPage:
    """A page of the caller's inbox."""
    if after is not None and before is not None:
        raise InvalidRequest("give after or before, not both", field="before")
    if wait and before is not None:
        raise InvalidRequest("wait is for new entries (after), not for history (before)", field="wait")
    repo = services.repository
    only = EntryFilter(unread=unread, archived=archived)
    if before is not None:
        cursor = await check_current(repo, principal, parse_cursor(before, "before"))
        page = await repo.page_before(principal.app_id, principal.user_id, cursor, limit, only)
    else:
        start = await check_current(repo, principal, parse_cursor(after, "after")) if after is not None else None
        page = await repo.page_after(principal.app_id, principal.user_id, start, limit, only)
        if wait and not page.items:
            page = await _wait_for_entries(services, principal, start, limit, only, wait)
    return EntryPage(
        items=page.items, next_cursor=page.next_cursor.encode(), has_more=page.has_more, truncated=page.truncated
    )


async def _wait_for_entries(
    services: Services, principal: Principal, start: Cursor | None, limit: int, only: EntryFilter, wait_s: int
) -> Page:
    """Long-poll: read again whenever the user's channel says something, until entries or the deadline.

    The channel is subscribed (and acknowledged) before the store is read again, so an entry
    committed after that read always wakes the wait. Where this process has no pub/sub (role
    ``api``, or pub/sub down) the store is read every ``LONG_POLL_FALLBACK_S`` instead.
    """
    repo, app_id, user_id = services.repository, principal.app_id, principal.user_id
    deadline = time.monotonic() + wait_s
    head = start or await repo.head(app_id, user_id)
    waiter = Waiter(user_id, head.epoch, head.seq)
    channel = inbox_channel(services.settings.channel_prefix, app_id, user_id)
    hub = services.hub
    joined = False
    try:
        if hub is not None:
            try:
                await asyncio.wait_for(hub.join(channel, waiter), min(wait_s, SUBSCRIBE_TIMEOUT_S))
                joined = True
            except TimeoutError:
                pass  # pub/sub is down: read the store now and then instead
        while True:
            if services.stopping.is_set():
                # Answer now, without queueing behind the store reads of the streams still draining:
                # nothing new since the last read, and the client polls again on another instance.
                return Page(items=[], next_cursor=head, has_more=False, truncated=False)
            if start is not None:
                await check_current(repo, principal, start)  # an erase while waiting is a 410, not an empty page
            page = await repo.page_after(app_id, user_id, start, limit, only)
            remaining = deadline - time.monotonic()
            if page.items or remaining <= 0:
                return page
            if joined:
                await waiter.wait(remaining)  # the drain wakes it too
            else:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(services.stopping.wait(), min(LONG_POLL_FALLBACK_S, remaining))
    finally:
        if hub is not None:
            await hub.leave(channel, waiter)


async def check_current(repo: Repository, principal: Principal, cursor: Cursor) -> Cursor:
    """``cursor`` if it belongs to the inbox as it is now, else :class:`CursorReset`."""
    head = await repo.head(principal.app_id, principal.user_id)
    if cursor.epoch != head.epoch:
        raise CursorReset("the inbox was reset since this cursor was issued; restart without a cursor")
    if cursor.seq > head.seq:
        raise CursorReset("the cursor is ahead of this inbox (another deployment's?); restart without a cursor")
    return cursor


@get("/v1/me/unread-count", security=_SECURITY, responses=documented(401, 503), tags=["user"], summary="Unread entries")
async def unread_count(services: NamedDependency[Services], principal: NamedDependency[Principal]) -> UnreadCount:
    """How many of the caller's entries are unread, and the inbox head they are counted to."""
    unread, head = await services.repository.unread_and_head(principal.app_id, principal.user_id)
    return UnreadCount(unread=unread, cursor=head.encode())


@post(
    "/v1/me/notifications/{action:str}",
    status_code=200,
    security=_SECURITY,
    responses=documented(400, 401, 410, 413, 503),
    tags=["user"],
    summary="Mark entries read, unread, archived or unarchived",
    description=(
        "`action` is `read`, `unread`, `archive` or `unarchive`. The body names the entries: "
        '`{"ids": [...]}` (notification ids, unknown ones are ignored) or `{"up_to": cursor}` (every entry up '
        "to and including it). Every connected device of the user gets a `state` frame with the new unread "
        "count; the answer carries the same count."
    ),
)
async def mark(
    action: Annotated[str, PathParameter(pattern="^(read|unread|archive|unarchive)$")],
    data: JSONBody[StateChangeIn],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
) -> StateChangeOut:
    """Change the read state of some entries."""
    up_to = parse_cursor(data.up_to, "up_to") if data.up_to is not None else None
    change = await change_state(
        services.repository,
        services.publisher,
        services.settings.channel_prefix,
        principal,
        action,  # type: ignore[arg-type]
        ids=data.ids,
        up_to=up_to,
    )
    return StateChangeOut(updated=change.updated, unread=change.unread, cursor=change.head.encode())


route_handlers = [list_notifications, unread_count, mark]
