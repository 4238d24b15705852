"""Reconnect delays: exponential backoff with full jitter."""

from __future__ import annotations

import random

__all__ = ["Backoff"]

# 2**64 times any sane base is far past any cap; clamping keeps the float finite.
_MAX_EXPONENT = 64


class Backoff:
    """Full-jitter exponential backoff strategy.

    The delay after ``failures`` consecutive failures is drawn uniformly from
    ``[0, min(cap, base * 2**failures)]``. Full jitter spreads the reconnects of
    many clients that lost the same server, so they do not come back in a herd.

    Example::

        backoff = Backoff(base=0.5, cap=30.0)
        backoff.compute(0)   # somewhere in [0, 0.5]
        backoff.compute(10)  # somewhere in [0, 30.0]

    Attributes:
        base: Upper bound of the first delay, in seconds.
        cap: Largest delay ever returned, in seconds.
    """

    def __init__(
        self,
        base: float = 0.5,
        cap: float = 30.0,
        *,
        rng: random.Random | None = None,
    ) -> None:
        """Create the strategy.

        Args:
            base: Upper bound of the delay after zero failures, in seconds (> 0).
            cap: Upper bound of every delay, in seconds (>= base).
            rng: Random source; pass a seeded `random.Random` for reproducible delays.

        Raises:
            ValueError: If ``base`` is not positive or ``cap`` is below ``base``.
        """
        if not base > 0:
            raise ValueError(f"base must be > 0, got {base!r}")
        if not cap >= base:
            raise ValueError(f"cap must be >= base ({base!r}), got {cap!r}")
        self.base = float(base)
        self.cap = float(cap)
        self._rng = rng if rng is not None else random.Random()

    def ceiling(self, failures: int) -> float:
        """Return the upper bound of the delay after ``failures`` failures.

        Args:
            failures: Number of consecutive failures so far (>= 0).

        Returns:
            ``min(cap, base * 2**failures)`` in seconds.

        Raises:
            ValueError: If ``failures`` is negative.
        """
        if failures < 0:
            raise ValueError(f"failures must be >= 0, got {failures!r}")
        return min(self.cap, self.base * 2.0 ** min(failures, _MAX_EXPONENT))

    def compute(self, failures: int) -> float:
        """Return a random delay to wait after ``failures`` consecutive failures.

        Args:
            failures: Number of consecutive failures so far (>= 0).

        Returns:
            A delay in seconds, uniform in ``[0, ceiling(failures)]``.

        Raises:
            ValueError: If ``failures`` is negative.
        """
        return self._rng.uniform(0.0, self.ceiling(failures))

    def __repr__(self) -> str:
        """Return ``Backoff(base=..., cap=...)``."""
        return f"Backoff(base={self.base!r}, cap={self.cap!r})"
