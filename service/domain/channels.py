"""Names of pub/sub channels."""

from __future__ import annotations


def inbox_channel(prefix: str, app_id: str, user_id: str) -> str:
    """The channel on which every new entry of one inbox is published."""
    return f"{prefix}:inbox:{app_id}:{user_id}"
