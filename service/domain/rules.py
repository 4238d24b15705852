"""Limits of the v1 API, in one place so the schemas, docs and tests agree."""

from __future__ import annotations

MAX_BATCH = 1000
"""Notifications in one batch request."""
MAX_RECIPIENTS = 1000
"""Users named in one notification."""
MAX_USER_ID_LENGTH = 128
MAX_TYPE_LENGTH = 100
MAX_TITLE_LENGTH = 1000
MAX_BODY_LENGTH = 10_000
MAX_IDEMPOTENCY_KEY_LENGTH = 255
IDEMPOTENCY_WINDOW_S = 24 * 3600
"""How long an Idempotency-Key is remembered per app and producer key."""
MAX_TOPIC_LENGTH = 128
TOPIC_PATTERN = r"^[A-Za-z0-9._:@-]+$"
"""Topic names: safe in a URL path segment, like user ids but without ``|+=``."""
MAX_SUBSCRIBE_BATCH = 1000
"""Users subscribed to a topic by one request."""
MAX_TTL_S = 366 * 24 * 3600
MAX_SCHEDULE_AHEAD_S = 366 * 24 * 3600
"""How far ahead ``send_at`` may be."""
MAX_STATE_IDS = 500
"""Notification ids in one read-state change."""
MAX_WAIT_S = 60
"""The longest long-poll (``wait``)."""
DEFAULT_PAGE = 50
MAX_PAGE = 500
USER_ID_PATTERN = r"^[A-Za-z0-9._:@|+=-]+$"
"""User ids are opaque to Tidings but must be safe in channel names and logs."""
TYPE_PATTERN = r"^[A-Za-z0-9._:/-]+$"
TEXT_PATTERN = r"^[^\x00]*$"
"""Free text may hold anything but NUL, which PostgreSQL text cannot store."""
HEADER_TOKEN_PATTERN = r"^[^\x00-\x1f\x7f]+$"
"""Header values we store (Idempotency-Key): no control characters."""
NOTIFICATION_ID_PATTERN = r"^[0-9a-f]{32}$"
MAX_DATA_DEPTH = 32
"""Nesting levels allowed in ``data`` (objects and arrays); deeper is refused, not a crash."""


def json_depth(value: object) -> int:
    """How deeply objects and arrays nest in ``value`` (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: list[object] = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        stack.extend((child, depth) for child in children)
    return deepest
