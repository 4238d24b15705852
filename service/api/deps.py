"""Dependencies shared by the HTTP handlers: the services and the caller's identity."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.datastructures import State
from litestar.di import NamedDependency

from service.auth.api_keys import Producer, bearer, verify_api_key
from service.auth.tokens import Principal, verify_user_token
from service.lifespan import Services


def provide_services(state: State) -> Services:
    """The process's :class:`Services`."""
    services: Services = state.services
    return services


def provide_producer(request: Request[Any, Any, Any], services: NamedDependency[Services]) -> Producer:
    """The producer calling, from ``Authorization: Bearer <api key>``."""
    settings = services.settings
    return verify_api_key(bearer(request.headers.get("authorization")), settings.api_key, settings.app_id)


def provide_principal(request: Request[Any, Any, Any], services: NamedDependency[Services]) -> Principal:
    """The user calling, from ``Authorization: Bearer <user JWT>``."""
    settings = services.settings
    return verify_user_token(bearer(request.headers.get("authorization")), settings.jwt_secret, settings.app_id)
