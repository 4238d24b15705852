"""Settings: one frozen value built from ``TIDINGS_*`` environment variables.

Nothing here reads the environment at import time: ``Settings.from_env(environ)``
is called once by each entry point (``serve``, ``worker``, the launcher) and the
value is passed down. ``TIDINGS_TEST_*`` variables belong to the test suite and
are never read here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

Env = Literal["dev", "prod"]
Role = Literal["all", "api", "gateway"]

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./var/tidings.db"


class ConfigError(ValueError):
    """A setting is missing or invalid; the message names the variable."""


def _int(environ: Mapping[str, str], name: str, default: int, *, low: int, high: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _float(environ: Mapping[str, str], name: str, default: float, *, low: float, high: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _choice(environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = environ.get(name) or default
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def _name(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name) or default
    if not value.replace("-", "").replace("_", "").replace(".", "").replace(":", "").isalnum() or len(value) > 64:
        raise ConfigError(f"{name} must be 1-64 letters, digits, '-', '_', '.' or ':', got {value!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of a Tidings process. Build with :meth:`from_env`."""

    env: Env = "prod"
    """``dev`` allows generated credentials; ``prod`` requires explicit ones."""
    host: str = "127.0.0.1"
    port: int = 8000
    role: Role = "all"
    """``api`` serves the producer and user HTTP API, ``gateway`` the streams, ``all`` both."""
    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str | None = None
    """Redis for the arq queue and, unless ``pubsub_redis_url`` is set, pub/sub."""
    pubsub_redis_url: str | None = None
    channel_prefix: str = "tidings"
    """Prefix of every pub/sub channel, so several deployments can share one Redis."""
    queue_name: str = "tidings:queue"
    jwt_secret: str = ""
    """HS256 secret that signs user tokens."""
    api_key: str = ""
    """The producer key accepted on the producer API."""
    app_id: str = "default"
    fanout_chunk: int = 500
    """Recipients stored per transaction (and per chunk job)."""
    ping_interval_s: float = 10.0
    """Seconds between ``ping`` frames on a stream."""
    positioning_interval_s: float = 5.0
    """Seconds between checks of connected users' head seq against the store."""
    auth_timeout_s: float = 5.0
    """Seconds a new WebSocket has to send its ``auth`` frame."""
    outbox_max_bytes: int = 1 << 20
    """Bytes queued for one connection before it is closed with 4008 (too slow)."""
    send_timeout_s: float = 10.0
    """Seconds one frame may wait for a socket that is not draining before 4008 (too slow)."""
    drain_s: float = 3.0
    """Seconds over which SIGTERM spreads the 1012 closes of this process's streams."""
    replay_page: int = 200
    """Entries read from the store per page while a stream replays."""
    sweep_after_s: int = 10
    """Age after which a still-``accepted`` notification is re-enqueued by the sweeper."""
    job_timeout_s: int = 5
    """arq job timeout; a killed job runs again about this long after it started."""
    poll_delay_s: float = 0.005
    """arq queue poll delay; dominates enqueue-to-device latency."""
    max_body_bytes: int = 256 * 1024
    """Largest accepted request body (413 beyond)."""
    retention_days: int = 30
    log_level: str = "info"

    @property
    def pubsub_url(self) -> str | None:
        """The Redis URL used for pub/sub."""
        return self.pubsub_redis_url or self.redis_url

    @property
    def serves_api(self) -> bool:
        """Whether this process serves the producer and user HTTP API."""
        return self.role in ("all", "api")

    @property
    def serves_gateway(self) -> bool:
        """Whether this process serves the WebSocket gateway."""
        return self.role in ("all", "gateway")

    def replace(self, **changes: object) -> Settings:
        """A copy with some fields changed (tests and the launcher use it)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Read ``TIDINGS_*`` variables; raise :class:`ConfigError` naming a bad one."""
        e = environ
        env = _choice(e, "TIDINGS_ENV", "prod", ("dev", "prod"))
        database_url = e.get("TIDINGS_DATABASE_URL") or DEFAULT_DATABASE_URL
        if not database_url.startswith(("sqlite+aiosqlite://", "postgresql+asyncpg://", "postgresql://", "postgres://")):
            raise ConfigError(
                "TIDINGS_DATABASE_URL must start with sqlite+aiosqlite:// or postgresql+asyncpg://, "
                f"got {database_url.split(':', 1)[0]!r}"
            )
        if database_url.startswith(("postgresql://", "postgres://")):
            database_url = "postgresql+asyncpg://" + database_url.split("://", 1)[1]
        redis_url = e.get("TIDINGS_REDIS_URL") or None
        pubsub_url = e.get("TIDINGS_PUBSUB_REDIS_URL") or None
        for name, url in (("TIDINGS_REDIS_URL", redis_url), ("TIDINGS_PUBSUB_REDIS_URL", pubsub_url)):
            if url is not None and not url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(f"{name} must start with redis://, rediss:// or unix://")
        settings = cls(
            env=env,  # type: ignore[arg-type]
            host=e.get("TIDINGS_HOST") or "127.0.0.1",
            port=_int(e, "TIDINGS_PORT", 8000, low=0, high=65535),
            role=_choice(e, "TIDINGS_ROLE", "all", ("all", "api", "gateway")),  # type: ignore[arg-type]
            database_url=database_url,
            redis_url=redis_url,
            pubsub_redis_url=pubsub_url,
            channel_prefix=_name(e, "TIDINGS_CHANNEL_PREFIX", "tidings"),
            queue_name=_name(e, "TIDINGS_QUEUE_NAME", "tidings:queue"),
            jwt_secret=e.get("TIDINGS_JWT_SECRET", ""),
            api_key=e.get("TIDINGS_API_KEY", ""),
            fanout_chunk=_int(e, "TIDINGS_FANOUT_CHUNK", 500, low=1, high=500),
            ping_interval_s=_float(e, "TIDINGS_PING_INTERVAL_S", 10.0, low=0.05, high=300),
            positioning_interval_s=_float(e, "TIDINGS_POSITIONING_INTERVAL_S", 5.0, low=0.05, high=3600),
            auth_timeout_s=_float(e, "TIDINGS_AUTH_TIMEOUT_S", 5.0, low=0.05, high=60),
            outbox_max_bytes=_int(e, "TIDINGS_OUTBOX_MAX_BYTES", 1 << 20, low=1024, high=1 << 30),
            send_timeout_s=_float(e, "TIDINGS_SEND_TIMEOUT_S", 10.0, low=0.1, high=300),
            drain_s=_float(e, "TIDINGS_DRAIN_S", 3.0, low=0, high=120),
            replay_page=_int(e, "TIDINGS_REPLAY_PAGE", 200, low=1, high=500),
            sweep_after_s=_int(e, "TIDINGS_SWEEP_AFTER_S", 10, low=1, high=86400),
            job_timeout_s=_int(e, "TIDINGS_JOB_TIMEOUT_S", 5, low=1, high=3600),
            poll_delay_s=_float(e, "TIDINGS_POLL_DELAY_S", 0.005, low=0.001, high=5),
            max_body_bytes=_int(e, "TIDINGS_MAX_BODY_BYTES", 256 * 1024, low=1024, high=64 << 20),
            retention_days=_int(e, "TIDINGS_RETENTION_DAYS", 30, low=1, high=36500),
            log_level=_choice(e, "TIDINGS_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
        )
        return settings

    def require_credentials(self) -> None:
        """Fail unless a JWT secret and an API key are configured."""
        if not self.jwt_secret:
            raise ConfigError("TIDINGS_JWT_SECRET is not set (make run generates one in dev)")
        if not self.api_key:
            raise ConfigError("TIDINGS_API_KEY is not set (make run generates one in dev)")
        if self.env == "prod" and len(self.jwt_secret) < 32:
            raise ConfigError("TIDINGS_JWT_SECRET must be at least 32 characters in prod")

    def require_redis(self, who: str) -> str:
        """The Redis URL, or a :class:`ConfigError` explaining how to get one."""
        if not self.redis_url:
            raise ConfigError(
                f"TIDINGS_REDIS_URL is not set: `{who}` needs Redis. Set TIDINGS_REDIS_URL=redis://host:6379/0, "
                "or use `make run`, which starts an embedded Redis for you."
            )
        return self.redis_url
