"""Server frames of the stream protocol, encoded once as JSON bytes."""

from __future__ import annotations

import msgspec

from service.domain.models import Entry

_encoder = msgspec.json.Encoder()

PING = b'{"type":"ping"}'


def notification_frame(entry: Entry) -> bytes:
    """``{"type":"notification","notification": entry}``."""
    return b'{"type":"notification","notification":' + _encoder.encode(entry) + b"}"


def ready_frame(cursor: str, unread: int, truncated: bool = False) -> bytes:
    """``{"type":"ready","cursor","unread","truncated"}``: the device is live; ``truncated``
    says the replay skipped entries that retention or an erase had removed."""
    return _encoder.encode({"type": "ready", "cursor": cursor, "unread": unread, "truncated": truncated})


def error_frame(code: str, message: str) -> bytes:
    """``{"type":"error","code","message"}``, sent before a close."""
    return _encoder.encode({"type": "error", "code": code, "message": message})


def state_frame(
    action: str, *, ids: list[str] | None, up_to: str | None, at: str | None, unread: int, cursor: str, seq: int
) -> bytes:
    """``{"type":"state","action","ids"|"up_to","at","unread","cursor","seq"}``: entries of this
    inbox changed read state; ``unread`` is the count right after the change, as of ``cursor``
    (the head), whose seq is ``seq``: an entry with a higher seq is not in the count yet."""
    frame: dict[str, object] = {"type": "state", "action": action}
    if ids is not None:
        frame["ids"] = ids
    if up_to is not None:
        frame["up_to"] = up_to
    frame |= {"at": at, "unread": unread, "cursor": cursor, "seq": seq}
    return _encoder.encode(frame)
