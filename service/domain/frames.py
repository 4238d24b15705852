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
