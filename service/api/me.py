"""The user API: a user's own inbox, by cursor."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import Parameter

from service.api.schemas import EntryPage, UnreadCount
from service.auth.tokens import Principal
from service.domain import rules
from service.domain.cursor import Cursor, InvalidCursorError
from service.errors import CursorReset, InvalidCursor, InvalidRequest
from service.lifespan import Services
from service.store.repository import Repository

_SECURITY = [{"userToken": []}]


def parse_cursor(text: str, field: str) -> Cursor:
    """Decode a client's cursor or raise :class:`InvalidCursor` naming the field."""
    try:
        return Cursor.decode(text)
    except InvalidCursorError as exc:
        raise InvalidCursor(f"{field} is not a valid cursor: {exc}", field=field) from None


@get(
    "/v1/me/notifications",
    security=_SECURITY,
    tags=["user"],
    summary="Poll the inbox after a cursor",
    description=(
        "Entries after `after` in seq order (from the start of the inbox without it), or with "
        "`before` the history: the entry that cursor follows and older ones, newest first "
        "(pass the head cursor, e.g. from `ready` or a page, to start at the newest). "
        "An empty page's `next_cursor` is the cursor given (the head when none). "
        "A cursor from an erased inbox is 410 `cursor_reset`: restart without one."
    ),
)
async def list_notifications(
    request: Request[Any, Any, Any],
    services: NamedDependency[Services],
    principal: NamedDependency[Principal],
    after: Annotated[str | None, Parameter(description="Entries after this cursor, oldest first.")] = None,
    before: Annotated[
        str | None,
        Parameter(description="History: the entry this cursor follows and older ones, newest first."),
    ] = None,
    limit: Annotated[int, Parameter(ge=1, le=rules.MAX_PAGE)] = rules.DEFAULT_PAGE,
) -> EntryPage:
    """A page of the caller's inbox."""
    if "wait" in request.query_params:
        # Not yet built: refuse rather than answer as if the parameter were absent.
        raise InvalidRequest("wait is not supported yet", field="wait")
    if after is not None and before is not None:
        raise InvalidRequest("give after or before, not both", field="before")
    repo = services.repository
    if before is not None:
        cursor = await _current(repo, principal, parse_cursor(before, "before"))
        page = await repo.page_before(principal.app_id, principal.user_id, cursor, limit)
    else:
        start = await _current(repo, principal, parse_cursor(after, "after")) if after is not None else None
        page = await repo.page_after(principal.app_id, principal.user_id, start, limit)
    return EntryPage(
        items=page.items, next_cursor=page.next_cursor.encode(), has_more=page.has_more, truncated=page.truncated
    )


async def _current(repo: Repository, principal: Principal, cursor: Cursor) -> Cursor:
    """``cursor`` if it belongs to the inbox as it is now, else :class:`CursorReset`."""
    head = await repo.head(principal.app_id, principal.user_id)
    if cursor.epoch != head.epoch:
        raise CursorReset("the inbox was reset since this cursor was issued; restart without a cursor")
    if cursor.seq > head.seq:
        raise CursorReset("the cursor is ahead of this inbox (another deployment's?); restart without a cursor")
    return cursor


@get("/v1/me/unread-count", security=_SECURITY, tags=["user"], summary="Unread entries")
async def unread_count(services: NamedDependency[Services], principal: NamedDependency[Principal]) -> UnreadCount:
    """How many of the caller's entries are unread."""
    return UnreadCount(unread=await services.repository.unread_count(principal.app_id, principal.user_id))


route_handlers = [list_notifications, unread_count]
