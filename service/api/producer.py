"""The producer API: enqueue notifications and follow their status."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

import msgspec
from litestar import Response, delete, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, PathParameter

from service.api.schemas import Accepted, NotificationIn, NotificationStatus
from service.auth.api_keys import Producer
from service.broker.base import Hint
from service.delivery import deliver_all
from service.domain import rules
from service.domain.channels import inbox_channel
from service.errors import BrokerUnavailable, InvalidRequest, NotFound
from service.lifespan import Services
from service.queue import enqueue_delivery
from service.store.repository import NewNotification, iso

_SECURITY = [{"apiKey": []}]


def _request_hash(data: NotificationIn) -> str:
    return hashlib.sha256(msgspec.json.encode(data, order="sorted")).hexdigest()


def _unique(users: list[str]) -> list[str]:
    return list(dict.fromkeys(users))


@post(
    "/v1/notifications",
    status_code=202,
    security=_SECURITY,
    tags=["producer"],
    summary="Enqueue a notification",
    description=(
        "Stores the notification (status `accepted`) before answering, then queues its fan-out. "
        "A repeated `Idempotency-Key` (same producer key, within 24 h) returns the first answer; "
        "the same key with a different body is 409 `idempotency_conflict`."
    ),
)
async def send_notification(
    data: JSONBody[NotificationIn],
    services: NamedDependency[Services],
    producer: NamedDependency[Producer],
    idempotency_key: Annotated[
        str | None,
        HeaderParameter(
            name="Idempotency-Key",
            required=False,
            min_length=1,
            max_length=rules.MAX_IDEMPOTENCY_KEY_LENGTH,
            pattern=rules.HEADER_TOKEN_PATTERN,
            description="Makes retries safe: one notification per key.",
        ),
    ] = None,
) -> Response[Accepted]:
    """Accept a notification for delivery."""
    if rules.json_depth(data.data) > rules.MAX_DATA_DEPTH:
        raise InvalidRequest(f"data nests deeper than {rules.MAX_DATA_DEPTH} levels", field="data")
    settings = services.settings
    stored, created = await services.repository.accept(
        NewNotification(
            app_id=producer.app_id,
            type=data.type,
            title=data.title,
            body=data.body,
            data=data.data,
            priority=data.priority,
            recipients=_unique(data.recipients.users),
            producer=producer.key_id,
            idempotency_key=idempotency_key,
            request_hash=_request_hash(data),
        )
    )
    if created:
        services.metrics.accepted.inc()
    background = None
    degraded = False
    if stored.status == "accepted":
        try:
            await enqueue_delivery(services.arq, settings.queue_name, settings.channel_prefix, stored.id)
        except BrokerUnavailable:
            # The row is durable; deliver it from here (the sweeper would, too, once Redis is back).
            degraded = True
            services.metrics.degraded.inc()
            background = BackgroundTask(
                deliver_all,
                services.repository,
                services.publisher,
                settings.channel_prefix,
                stored.id,
                settings.fanout_chunk,
            )
    if not created:
        # A replay gets the first answer again; GET /v1/notifications/{id} tells where it is now.
        return Response(
            Accepted(id=stored.id, status="accepted"), status_code=202, headers={"Idempotent-Replayed": "true"}
        )
    return Response(
        Accepted(id=stored.id, status=stored.status, degraded=degraded), status_code=202, background=background
    )


@get("/v1/notifications/{notification_id:str}", security=_SECURITY, tags=["producer"], summary="Delivery status")
async def get_notification(notification_id: FromPath[str], services: NamedDependency[Services], producer: NamedDependency[Producer]) -> NotificationStatus:
    """A notification's status and how many inbox entries it has."""
    found = None
    if re.fullmatch(rules.NOTIFICATION_ID_PATTERN, notification_id):  # anything else cannot exist
        found = await services.repository.status_of(notification_id, producer.app_id)
    if found is None:
        raise NotFound(f"no notification {notification_id}")
    stored, delivered = found
    return NotificationStatus(
        id=stored.id,
        status=stored.status,  # type: ignore[arg-type]
        recipients=stored.recipient_count,
        delivered=delivered,
        reason=stored.reason,
        created_at=iso(stored.created_at) or "",
    )


@delete(
    "/v1/users/{user_id:str}",
    status_code=204,
    security=_SECURITY,
    tags=["producer"],
    summary="Erase a user's inbox",
    description=(
        "Deletes every entry of the user's inbox and starts a new epoch: old cursors get "
        "410 `cursor_reset` (WebSocket close 4009), and the next entry is seq 1."
    ),
)
async def erase_user(
    user_id: Annotated[str, PathParameter(pattern=rules.USER_ID_PATTERN, max_length=rules.MAX_USER_ID_LENGTH)],
    services: NamedDependency[Services], producer: NamedDependency[Producer]) -> None:
    """Erase an inbox; connected devices of the user are told to restart from the head."""
    settings = services.settings
    head = await services.repository.erase_inbox(producer.app_id, user_id)
    hint = Hint(inbox_channel(settings.channel_prefix, producer.app_id, user_id), head.epoch, 0, b"")
    try:
        await services.publisher.publish([hint])
    except BrokerUnavailable:
        pass  # connected streams notice the new epoch on their next positioning pass


route_handlers = [send_notification, get_notification, erase_user]
