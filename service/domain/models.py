"""The entry: one notification in one user's inbox, as every path sends it."""

from __future__ import annotations

from typing import Any, Literal

import msgspec

Priority = Literal["normal", "high"]
Status = Literal["accepted", "scheduled", "delivered", "cancelled", "failed"]


class Entry(msgspec.Struct, frozen=True, kw_only=True):
    """One notification in one inbox; the same JSON on poll, WebSocket, SSE and the SDK."""

    id: str
    """The notification id (shared by every recipient's entry)."""
    seq: int
    """Position in this inbox: 1, 2, 3... with no gap, restarting at 1 in a new epoch."""
    cursor: str
    """Opaque cursor that resumes right after this entry."""
    type: str
    title: str
    body: str | None
    data: dict[str, Any]
    priority: Priority
    created_at: str
    expires_at: str | None
    read_at: str | None
    archived_at: str | None
