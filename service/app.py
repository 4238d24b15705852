"""The composition root: ``create_app(settings)`` wires every part of a service process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from service.api import me, ops, producer, topics
from service.api.deps import provide_principal, provide_producer, provide_services
from service.api.paths import reject_ambiguous_paths
from service.api.problems import EXCEPTION_HANDLERS
from service.gateway import sse, ws
from service.lifespan import open_services
from service.settings import Settings

VERSION = "0.1.0"


def openapi_config() -> OpenAPIConfig:
    """The OpenAPI document's metadata and security schemes."""
    return OpenAPIConfig(
        title="Tidings",
        version=VERSION,
        description=(
            "Self-hosted notification delivery. Producers enqueue over HTTP with an API key; "
            "devices receive live over the WebSocket `/v1/stream` and catch up by cursor."
        ),
        path="/docs",
        render_plugins=[ScalarRenderPlugin()],
        components=Components(
            security_schemes={
                "apiKey": SecurityScheme(type="http", scheme="bearer", description="A producer API key."),
                "userToken": SecurityScheme(
                    type="http", scheme="bearer", bearer_format="JWT", description="A user JWT (HS256, sub, exp)."
                ),
            }
        ),
    )


def create_app(settings: Settings) -> Litestar:
    """A Litestar app for ``settings``; connections open in its lifespan, not here."""

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        async with open_services(settings) as services:
            app.state.services = services
            yield

    handlers: list[object] = [*ops.route_handlers]
    if settings.serves_api:
        handlers += [*producer.route_handlers, *topics.route_handlers, *me.route_handlers]
    if settings.serves_gateway:
        handlers += [*ws.route_handlers, *sse.route_handlers]
    return Litestar(
        route_handlers=handlers,  # type: ignore[arg-type]
        lifespan=[lifespan],
        dependencies={
            "services": Provide(provide_services, sync_to_thread=False),
            "producer": Provide(provide_producer, sync_to_thread=False),
            "principal": Provide(provide_principal, sync_to_thread=False),
        },
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[reject_ambiguous_paths],
        openapi_config=openapi_config(),
        request_max_body_size=settings.max_body_bytes,
        debug=False,
        logging_config=None,  # the entry point configures logging (with token redaction)
    )
