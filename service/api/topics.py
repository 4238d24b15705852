"""The producer API for topics: who is subscribed, managed server-side."""

from __future__ import annotations

from typing import Annotated

from litestar import delete as delete_route
from litestar import get, post, put
from litestar.di import NamedDependency
from litestar.params import JSONBody, Parameter, PathParameter

from service.api.problems import documented
from service.api.schemas import NamePage, SubscribersAdded, SubscribersIn
from service.auth.api_keys import Producer
from service.domain import rules
from service.lifespan import Services
from service.store.topics import NamePage as StoredPage

_SECURITY = [{"apiKey": []}]

TopicPath = Annotated[str, PathParameter(pattern=rules.TOPIC_PATTERN, max_length=rules.MAX_TOPIC_LENGTH)]
UserPath = Annotated[str, PathParameter(pattern=rules.USER_ID_PATTERN, max_length=rules.MAX_USER_ID_LENGTH)]
After = Annotated[str | None, Parameter(max_length=rules.MAX_TOPIC_LENGTH, description="The last name of the previous page.")]
Limit = Annotated[int, Parameter(ge=1, le=rules.MAX_PAGE)]


def _page(found: StoredPage) -> NamePage:
    return NamePage(items=found.items, has_more=found.has_more, next_after=found.items[-1] if found.has_more else None)


@put(
    "/v1/topics/{topic:str}/subscribers/{user_id:str}",
    status_code=204,
    security=_SECURITY,
    responses=documented(400, 401, 503),
    tags=["topics"],
    summary="Subscribe a user to a topic",
    description="Idempotent. Notifications sent to the topic from now on reach the user.",
)
async def subscribe(
    topic: TopicPath, user_id: UserPath, services: NamedDependency[Services], producer: NamedDependency[Producer]
) -> None:
    """Add one subscriber."""
    await services.topics.subscribe(producer.app_id, topic, [user_id])


@post(
    "/v1/topics/{topic:str}/subscribers",
    status_code=200,
    security=_SECURITY,
    responses=documented(400, 401, 413, 503),
    tags=["topics"],
    summary="Subscribe many users to a topic",
    description=f"Up to {rules.MAX_SUBSCRIBE_BATCH} users at once; those already subscribed are left as they are.",
)
async def subscribe_many(
    topic: TopicPath,
    data: JSONBody[SubscribersIn],
    services: NamedDependency[Services],
    producer: NamedDependency[Producer],
) -> SubscribersAdded:
    """Add many subscribers in one transaction."""
    return SubscribersAdded(added=await services.topics.subscribe(producer.app_id, topic, data.users))


@delete_route(
    "/v1/topics/{topic:str}/subscribers/{user_id:str}",
    status_code=204,
    security=_SECURITY,
    responses=documented(400, 401, 503),
    tags=["topics"],
    summary="Unsubscribe a user from a topic",
    description="Idempotent. A notification whose delivery already started still reaches the user.",
)
async def unsubscribe(
    topic: TopicPath, user_id: UserPath, services: NamedDependency[Services], producer: NamedDependency[Producer]
) -> None:
    """Remove one subscriber."""
    await services.topics.unsubscribe(producer.app_id, topic, user_id)


@get(
    "/v1/topics/{topic:str}/subscribers",
    security=_SECURITY,
    responses=documented(400, 401, 503),
    tags=["topics"],
    summary="A topic's subscribers",
    description="User ids in ascending order; pass `next_after` as `after` for the next page.",
)
async def list_subscribers(
    topic: TopicPath,
    services: NamedDependency[Services],
    producer: NamedDependency[Producer],
    after: After = None,
    limit: Limit = rules.DEFAULT_PAGE,
) -> NamePage:
    """A page of subscribers."""
    return _page(await services.topics.subscribers(producer.app_id, topic, after, limit))


@get(
    "/v1/users/{user_id:str}/topics",
    security=_SECURITY,
    responses=documented(400, 401, 503),
    tags=["topics"],
    summary="A user's topics",
    description="Topic names in ascending order; pass `next_after` as `after` for the next page.",
)
async def list_topics_of_user(
    user_id: UserPath,
    services: NamedDependency[Services],
    producer: NamedDependency[Producer],
    after: After = None,
    limit: Limit = rules.DEFAULT_PAGE,
) -> NamePage:
    """A page of the user's topics."""
    return _page(await services.topics.topics_of(producer.app_id, user_id, after, limit))


route_handlers = [subscribe, subscribe_many, unsubscribe, list_subscribers, list_topics_of_user]
