"""Health endpoints for load balancers and orchestrators."""

from __future__ import annotations

from typing import Any

from litestar import Response, get
from litestar.di import NamedDependency
from redis.exceptions import RedisError

from service.errors import StoreUnavailable
from service.lifespan import Services


@get("/health/live", tags=["ops"], summary="Liveness", include_in_schema=True)
async def live() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@get("/health/ready", tags=["ops"], summary="Readiness: Redis and the database answer")
async def ready(services: NamedDependency[Services]) -> Response[dict[str, Any]]:
    """200 when the database and Redis answer, 503 (with what failed) otherwise."""
    checks: dict[str, str] = {}
    try:
        await services.repository.ping()
        checks["database"] = "ok"
    except StoreUnavailable as exc:
        checks["database"] = exc.detail
    try:
        await services.arq.ping()
        checks["redis"] = "ok"
    except (RedisError, OSError) as exc:
        checks["redis"] = f"unavailable: {type(exc).__name__}"
    if services.stopping.is_set():
        checks["gateway"] = "draining"
    if services.subscriptions is not None:
        checks["pubsub"] = "ok" if services.subscriptions.connected else "reconnecting"
    healthy = all(value == "ok" for value in checks.values())
    body: dict[str, Any] = {"status": "ok" if healthy else "unavailable", "checks": checks}
    return Response(body, status_code=200 if healthy else 503, headers=None if healthy else {"Retry-After": "2"})


@get("/metrics", tags=["ops"], summary="Prometheus metrics", media_type="text/plain; version=0.0.4")
async def metrics(services: NamedDependency[Services]) -> bytes:
    """Streams, closes by code, accepted and degraded notifications."""
    return services.metrics.render()


route_handlers = [live, ready, metrics]
