"""Opaque cursors: a position (epoch, seq) in one user's inbox.

A cursor is base64url text so clients treat it as a token, never parse it. The
epoch changes when an inbox is erased, so a cursor minted before the erase is
recognised (``cursor_reset``) instead of silently pointing into a new inbox.
"""

from __future__ import annotations

import base64
import binascii
import struct
from dataclasses import dataclass

_VERSION = 1
_LAYOUT = struct.Struct(">BIQ")  # version, epoch, seq


class InvalidCursorError(ValueError):
    """The text is not a cursor this service issued."""


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A position in an inbox: entries with ``seq`` greater than this come after it."""

    epoch: int
    seq: int

    def encode(self) -> str:
        """The opaque text form."""
        raw = _LAYOUT.pack(_VERSION, self.epoch, self.seq)
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """Parse a cursor; raise :class:`InvalidCursorError` for anything else."""
        if not text or len(text) > 64:
            raise InvalidCursorError("cursor is empty or too long")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except (binascii.Error, ValueError):
            raise InvalidCursorError("cursor is not base64url") from None
        if len(raw) != _LAYOUT.size:
            raise InvalidCursorError("cursor has the wrong length")
        version, epoch, seq = _LAYOUT.unpack(raw)
        if version != _VERSION or epoch == 0:
            raise InvalidCursorError("cursor was not issued by this service")
        cursor = cls(epoch, seq)
        if cursor.encode() != text:  # reject non-canonical spellings of the same bytes
            raise InvalidCursorError("cursor is not canonical")
        return cursor
