"""User tokens: HS256 JWTs signed by the customer's backend (``sub`` = user id, ``exp`` required)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import jwt

from service.domain.rules import MAX_USER_ID_LENGTH, USER_ID_PATTERN
from service.errors import Unauthorized

_USER_ID = re.compile(USER_ID_PATTERN)
LEEWAY_S = 5


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a user token speaks for."""

    app_id: str
    user_id: str
    deadline: float
    """When the token expires, on the ``time.monotonic()`` clock."""


def verify_user_token(token: str, secret: str, app_id: str) -> Principal:
    """Check a user JWT; raise :class:`Unauthorized` with the reason otherwise."""
    if not token:
        raise Unauthorized("missing user token")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["exp", "sub"]},
            leeway=LEEWAY_S,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.PyJWTError as exc:
        raise Unauthorized(f"invalid token: {exc}") from None
    user_id = claims.get("sub")
    if not isinstance(user_id, str) or not 0 < len(user_id) <= MAX_USER_ID_LENGTH or not _USER_ID.match(user_id):
        raise Unauthorized("invalid token: sub must be a user id")
    exp = claims["exp"]
    if not isinstance(exp, int | float):
        raise Unauthorized("invalid token: exp must be a number")
    deadline = time.monotonic() + (float(exp) + LEEWAY_S - time.time())
    return Principal(app_id=app_id, user_id=user_id, deadline=deadline)


def mint_user_token(secret: str, user_id: str, ttl_s: int = 3600) -> str:
    """A user token for ``user_id`` (the dev launcher and tests use it)."""
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iat": now, "exp": now + ttl_s}, secret, algorithm="HS256")
