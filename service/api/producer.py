"""The producer API: enqueue notifications and follow their status."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Annotated

import msgspec
from litestar import Response, delete, get, post
from litestar.background_tasks import BackgroundTask
from litestar.di import NamedDependency
from litestar.params import FromPath, HeaderParameter, JSONBody, PathParameter

from service.api.problems import documented, validation_field
from service.api.schemas import (
    Accepted,
    BatchError,
    BatchIn,
    BatchItem,
    BatchOut,
    BatchResult,
    NotificationIn,
    NotificationStatus,
)
from service.auth.api_keys import Producer
from service.broker.base import Hint
from service.delivery import deliver_all
from service.domain import rules
from service.domain.channels import inbox_channel
from service.domain.codes import ErrorCode
from service.errors import (
    BrokerUnavailable,
    IdempotencyConflict,
    InvalidRequest,
    NotCancellable,
    NotFound,
    TidingsError,
)
from service.lifespan import Services
from service.queue import enqueue_delivery
from service.store.access import iso, utcnow
from service.store.repository import NewNotification, StoredNotification

log = logging.getLogger("tidings.api")

_SECURITY = [{"apiKey": []}]


def _request_hash(data: NotificationIn) -> str:
    return hashlib.sha256(msgspec.json.encode(data, order="sorted")).hexdigest()


def _unique(users: list[str]) -> list[str]:
    return list(dict.fromkeys(users))


@post(
    "/v1/notifications",
    status_code=202,
    security=_SECURITY,
    responses=documented(400, 401, 409, 413, 503),
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
    outcome = await _accept(services, producer, data, idempotency_key)
    if outcome.replayed:
        # A replay gets the first answer again; GET /v1/notifications/{id} tells where it is now.
        return Response(
            Accepted(id=outcome.id, status=outcome.status), status_code=202, headers={"Idempotent-Replayed": "true"}
        )
    background = None
    if outcome.degraded and outcome.status == "accepted":  # a scheduled one waits for the sweeper
        background = BackgroundTask(_deliver_here, services, [outcome.id])
    return Response(
        Accepted(id=outcome.id, status=outcome.status, degraded=outcome.degraded), status_code=202, background=background
    )


@dataclass(frozen=True, slots=True)
class _Outcome:
    id: str
    status: str
    replayed: bool
    degraded: bool


def _checked(data: NotificationIn) -> NotificationIn:
    """What the schema cannot say: one kind of recipients, nesting depth, the schedule's range.

    Returns ``data`` with ``send_at`` in UTC, so one moment given with two offsets is one
    request (for the Idempotency-Key) and is stored as what it is.
    """
    if (data.recipients.users is None) == (data.recipients.topic is None):
        raise InvalidRequest("give recipients.users or recipients.topic, exactly one of them", field="recipients")
    if rules.json_depth(data.data) > rules.MAX_DATA_DEPTH:
        raise InvalidRequest(f"data nests deeper than {rules.MAX_DATA_DEPTH} levels", field="data")
    if data.send_at is None:
        return data
    try:
        send_at = data.send_at.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidRequest("send_at is out of range", field="send_at") from None
    if send_at > utcnow() + timedelta(seconds=rules.MAX_SCHEDULE_AHEAD_S):
        raise InvalidRequest("send_at is more than a year ahead", field="send_at")
    return msgspec.structs.replace(data, send_at=send_at)


async def _accept(
    services: Services, producer: Producer, data: NotificationIn, idempotency_key: str | None
) -> _Outcome:
    """Store one notification (or find its Idempotency-Key's) and queue its fan-out."""
    data = _checked(data)
    settings = services.settings
    stored, created = await services.repository.accept(
        NewNotification(
            app_id=producer.app_id,
            type=data.type,
            title=data.title,
            body=data.body,
            data=data.data,
            priority=data.priority,
            recipients=_unique(data.recipients.users or []),
            producer=producer.key_id,
            idempotency_key=idempotency_key,
            request_hash=_request_hash(data),
            topic=data.recipients.topic,
            send_at=data.send_at,
            ttl_seconds=data.ttl_seconds,
        )
    )
    if created:
        services.metrics.accepted.inc()
    degraded = False
    if stored.status in ("accepted", "scheduled"):
        try:
            await enqueue_delivery(
                services.arq, settings.queue_name, settings.channel_prefix, stored.id, stored.priority,
                defer_until=stored.send_at if stored.status == "scheduled" else None,
            )
        except BrokerUnavailable:
            # The row is durable; deliver it from here (the sweeper would, too, once Redis is back).
            # A replay leaves that to the request that created it.
            degraded = created
            if created:
                services.metrics.degraded.inc()
    # A replay answers what the first request was answered, not where delivery stands now.
    first_status = "scheduled" if stored.send_at is not None and stored.send_at > stored.created_at else "accepted"
    return _Outcome(id=stored.id, status=first_status, replayed=not created, degraded=degraded)


async def _deliver_here(services: Services, notification_ids: list[str]) -> None:
    """Fan out in this process, one after the other (the queue was unreachable)."""
    settings = services.settings
    for notification_id in notification_ids:
        await deliver_all(
            services.repository, services.publisher, settings.channel_prefix, notification_id, settings.fanout_chunk
        )


@post(
    "/v1/notifications/batch",
    status_code=202,
    security=_SECURITY,
    responses=documented(400, 401, 413, 503),
    tags=["producer"],
    summary="Enqueue many notifications",
    description=(
        f"Up to {rules.MAX_BATCH} notifications, each the body of `POST /v1/notifications` plus an optional "
        "`idempotency_key`. Each item is validated and stored on its own: the answer has one result per item, "
        "in order, either `{index, id, status}` (with `replayed` for a known key) or `{index, error}`; an invalid "
        "item does not sink the others. The request itself is 400 only when the envelope is wrong."
    ),
)
async def send_batch(
    data: JSONBody[BatchIn], services: NamedDependency[Services], producer: NamedDependency[Producer]
) -> Response[BatchOut]:
    """Accept many notifications; one result per item."""
    results: list[BatchResult] = []
    degraded: list[str] = []
    for index, raw in enumerate(data.notifications):
        try:
            item = msgspec.convert(raw, BatchItem)
        except msgspec.ValidationError as exc:
            field, detail = validation_field(str(exc))
            field = f"notifications[{index}]" + (f".{field}" if field else "")
            results.append(BatchResult(index=index, error=BatchError(ErrorCode.INVALID_REQUEST, detail, field)))
            continue
        try:
            outcome = await _accept(services, producer, item.notification(), item.idempotency_key)
        except TidingsError as exc:  # this item only: the ones stored already must be reported
            where = ".idempotency_key" if isinstance(exc, IdempotencyConflict) else f".{exc.field}" if exc.field else ""
            results.append(BatchResult(index=index, error=BatchError(exc.code, exc.detail, f"notifications[{index}]{where}")))
            continue
        except Exception:  # noqa: BLE001 - a bug in one item must not hide what the others did
            log.exception("batch item %d failed", index)
            results.append(BatchResult(index=index, error=BatchError(ErrorCode.INTERNAL, "internal error", f"notifications[{index}]")))
            continue
        if outcome.degraded and outcome.status == "accepted":
            degraded.append(outcome.id)
        results.append(
            BatchResult(index=index, id=outcome.id, status=outcome.status,
                        replayed=outcome.replayed, degraded=outcome.degraded)
        )
    background = BackgroundTask(_deliver_here, services, degraded) if degraded else None
    return Response(BatchOut(results=results), status_code=202, background=background)


@get("/v1/notifications/{notification_id:str}", security=_SECURITY,
    responses=documented(400, 401, 404, 503), tags=["producer"], summary="Delivery status")
async def get_notification(notification_id: FromPath[str], services: NamedDependency[Services], producer: NamedDependency[Producer]) -> NotificationStatus:
    """A notification's status and how many inbox entries it has."""
    found = None
    if re.fullmatch(rules.NOTIFICATION_ID_PATTERN, notification_id):  # anything else cannot exist
        found = await services.repository.status_of(notification_id, producer.app_id)
    if found is None:
        raise NotFound(f"no notification {notification_id}")
    return _status(*found)


def _status(stored: StoredNotification, delivered: int) -> NotificationStatus:
    return NotificationStatus(
        id=stored.id,
        status=stored.status,  # type: ignore[arg-type]
        recipients=stored.recipient_count,
        delivered=delivered,
        reason=stored.reason,
        created_at=iso(stored.created_at) or "",
        topic=stored.topic,
        send_at=iso(stored.send_at),
    )


@delete(
    "/v1/notifications/{notification_id:str}",
    status_code=200,
    security=_SECURITY,
    responses=documented(400, 401, 404, 409, 503),
    tags=["producer"],
    summary="Cancel a notification",
    description=(
        "Cancels a notification whose delivery has not started: a scheduled one before it is due, or one "
        "still waiting in the queue. Answers its status (`cancelled`; cancelling again answers the same). "
        "Once delivery has started, or it is delivered or failed, the answer is 409 `not_cancellable` and "
        "nothing changes. A cancel racing the due time is either cancelled or delivered, never both."
    ),
)
async def cancel_notification(
    notification_id: FromPath[str], services: NamedDependency[Services], producer: NamedDependency[Producer]
) -> NotificationStatus:
    """Cancel a notification that is not yet being delivered."""
    found = None
    if re.fullmatch(rules.NOTIFICATION_ID_PATTERN, notification_id):
        found = await services.repository.cancel(notification_id, producer.app_id)
    if found is None:
        raise NotFound(f"no notification {notification_id}")
    if found[0].status != "cancelled":
        raise NotCancellable(f"notification {notification_id} is {found[0].status}; its delivery has started")
    return _status(*found)


@delete(
    "/v1/users/{user_id:str}",
    status_code=204,
    security=_SECURITY,
    responses=documented(400, 401, 503),
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


route_handlers = [send_notification, send_batch, get_notification, cancel_notification, erase_user]
