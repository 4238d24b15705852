"""Prometheus metrics of one service process (``GET /metrics``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest


class Metrics:
    """The process's metrics, in a registry of its own (so tests can build many apps)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.streams = Gauge("tidings_streams", "Live streams on this process.", registry=self.registry)
        self.streams_closed = Counter(
            "tidings_streams_closed", "Streams ended, by close code.", ["code"], registry=self.registry
        )
        self.accepted = Counter(
            "tidings_notifications_accepted", "Notifications stored by the producer API.", registry=self.registry
        )
        self.degraded = Counter(
            "tidings_notifications_degraded", "Accepted while the queue was unreachable.", registry=self.registry
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
