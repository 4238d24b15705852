"""Producer API keys."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from service.errors import Unauthorized


@dataclass(frozen=True, slots=True)
class Producer:
    """Who sent a producer request."""

    app_id: str
    key_id: str
    """A stable, non-secret id of the key (scopes Idempotency-Keys)."""


def bearer(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer`` header; raise :class:`Unauthorized` otherwise."""
    if not authorization:
        raise Unauthorized("missing Authorization header (Bearer token)")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Authorization must be 'Bearer <token>'")
    return token.strip()


def key_id(api_key: str) -> str:
    """A short stable id derived from a key."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:16]


def verify_api_key(presented: str, expected: str, app_id: str) -> Producer:
    """Accept ``presented`` if it equals the configured key (constant time)."""
    if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise Unauthorized("invalid API key")
    return Producer(app_id=app_id, key_id=key_id(presented))
