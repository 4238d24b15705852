"""The read-state use case: change entries' read / archived state, then tell the user's devices.

The HTTP endpoints and the WebSocket ``read`` frame share it. The change is
committed first; the ``state`` frame pushed to every connected device of the
user (the one that asked included) is a courtesy on top: a device that misses
it gets the state on each entry it fetches and the count in ``ready``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from service.auth.tokens import Principal
from service.broker.base import STATE_SEQ, Hint, Publisher
from service.domain.channels import inbox_channel
from service.domain.cursor import Cursor
from service.domain.frames import state_frame
from service.errors import BrokerUnavailable, CursorReset, InvalidRequest
from service.store.access import iso
from service.store.inbox import StateAction, StateChange
from service.store.repository import Repository

log = logging.getLogger("tidings.read_state")


async def change_state(
    repository: Repository,
    publisher: Publisher,
    prefix: str,
    principal: Principal,
    action: StateAction,
    *,
    ids: Sequence[str] | None = None,
    up_to: Cursor | None = None,
) -> StateChange:
    """Apply ``action`` to the entries named by ``ids`` or up to ``up_to``, and publish it."""
    if (ids is None) == (up_to is None):
        raise InvalidRequest("give ids or up_to, exactly one of them", field="ids")
    head = await repository.head(principal.app_id, principal.user_id)
    epoch = head.epoch
    if up_to is not None:
        if up_to.epoch != head.epoch:
            raise CursorReset("the inbox was reset since this cursor was issued; restart without a cursor")
        if up_to.seq > head.seq:
            raise CursorReset("the cursor is ahead of this inbox (another deployment's?); restart without a cursor")
    change = await repository.change_state(
        principal.app_id,
        principal.user_id,
        epoch,
        action,
        ids=list(dict.fromkeys(ids)) if ids is not None else None,
        up_to=up_to.seq if up_to is not None else None,
    )
    if not change.changed:
        return change  # nothing changed: nothing to tell the devices
    frame = state_frame(
        action,
        # By ids: the ones that changed, so a device can copy ``at`` onto exactly those.
        ids=change.changed if ids is not None else None,
        up_to=up_to.encode() if up_to is not None else None,
        at=iso(change.at),
        unread=change.unread,
        cursor=change.head.encode(),
        seq=change.head.seq,
    )
    channel = inbox_channel(prefix, principal.app_id, principal.user_id)
    try:
        await publisher.publish([Hint(channel, epoch, STATE_SEQ, frame)])
    except BrokerUnavailable as exc:
        log.warning("state change of %s not pushed (devices see it on their next fetch): %s", principal.user_id, exc.detail)
    return change
