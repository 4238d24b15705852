"""Per-connection ordering of live entries: the rule that keeps a device in seq order.

Commit order is not publish order: worker B may publish seq 6 before worker A
publishes seq 5. A connection remembers the last seq it sent; a live entry at or
below it is a duplicate, the next one is sent, and one further ahead means the
entries in between must first be read from the store.
"""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    """What to do with a live entry."""

    DROP = "drop"
    """Already sent (seq <= last_sent)."""
    SEND = "send"
    """The next one (seq == last_sent + 1)."""
    FILL = "fill"
    """Ahead of a gap: read (last_sent, seq) from the store first."""


def judge(last_sent: int, seq: int) -> Verdict:
    """Classify a live entry with ``seq`` for a connection that last sent ``last_sent``."""
    if seq <= last_sent:
        return Verdict.DROP
    if seq == last_sent + 1:
        return Verdict.SEND
    return Verdict.FILL
