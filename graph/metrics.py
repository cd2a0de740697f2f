"""The API's metrics (Prometheus), in a registry of its own: several apps may share a process."""

from __future__ import annotations

import logging
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

logger = logging.getLogger(__name__)

ANONYMOUS: Final = "anonymous"  # an operation without a name
UNKNOWN: Final = "unknown"  # a name the document does not define (or no document)
OTHER: Final = "other"  # a name beyond the bounded set
MAX_NAME_LENGTH: Final = 64
DEFAULT_MAX_OPERATION_NAMES: Final = 200

# Operation latency: sub-millisecond reads to multi-second exports.
LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """GraphQL operations, WebSocket connections and live-event delivery of one API."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        max_operation_names: int = DEFAULT_MAX_OPERATION_NAMES,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.operations = Counter(
            "graphql_operations",
            "GraphQL operations by name, type and error code (OK without error); "
            "subscriptions are counted when they end",
            ["operation", "type", "code"],
            registry=self.registry,
        )
        self.operation_seconds = Histogram(
            "graphql_operation_seconds",
            "GraphQL query and mutation latency, by error code (OK without error)",
            ["operation", "type", "code"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.websocket_connections = Gauge(
            "websocket_connections", "Open GraphQL WebSocket connections", registry=self.registry
        )
        self.subscriptions_active = Gauge(
            "graphql_subscriptions_active",
            "Subscriptions listening for live events",
            registry=self.registry,
        )
        self.events_delivered = Counter(
            "subscription_events_delivered",
            "Live events handed to subscribers",
            registry=self.registry,
        )
        self.events_dropped = Counter(
            "subscription_events_dropped",
            "Live events discarded with a subscriber that fell too far behind (closed, 1013)",
            registry=self.registry,
        )
        self._max_names = max_operation_names
        self._names: set[str] = set()

    def operation_label(self, name: str | None) -> str:
        """`name` as a label value: cut to 64 characters, and once the bounded set of
        names is full, any new one is OTHER (clients choose names: cardinality must not)."""
        if not name:
            return ANONYMOUS
        name = name[:MAX_NAME_LENGTH]
        if name in self._names:
            return name
        if len(self._names) >= self._max_names:
            return OTHER
        self._names.add(name)
        if len(self._names) == self._max_names:
            logger.warning(
                "%d GraphQL operation names seen; new ones count as %r", len(self._names), OTHER
            )
        return name

    def record_operation(
        self, name: str, operation_type: str, code: str, seconds: float | None
    ) -> None:
        """Count one operation; `seconds` None leaves latency out (subscriptions)."""
        self.operations.labels(operation=name, type=operation_type, code=code).inc()
        if seconds is not None:
            self.operation_seconds.labels(operation=name, type=operation_type, code=code).observe(
                seconds
            )

    def subscriber_overflowed(self, events: int) -> None:
        """A slow subscriber was closed, its `events` discarded."""
        self.events_dropped.inc(events)
