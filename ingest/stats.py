"""The worker's counters (Prometheus) and its rate-limited warnings."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from core.topics import CONSUMED
from ingest.payloads import REASONS, Reason

logger = logging.getLogger(__name__)


class IngestStats:
    """Counters of one worker, in a registry of its own (several may share a process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.received = Counter(
            "ingest_messages_received", "MQTT messages received", ["kind"], registry=self.registry
        )
        self.dropped = Counter(
            "ingest_messages_dropped",
            "Messages dropped, by reason",
            ["reason"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "ingest_messages_duplicate",
            "Redelivered messages already stored",
            registry=self.registry,
        )
        self.stored = Counter("ingest_readings_stored", "Readings stored", registry=self.registry)
        self.live_dropped = Counter(
            "ingest_live_events_dropped",
            "Live events not published (Redis slow or down)",
            registry=self.registry,
        )
        self.store_failures = Counter(
            "ingest_store_failures", "Failed insert_many attempts (retried)", registry=self.registry
        )
        self.batch_size = Histogram(
            "ingest_batch_readings",
            "Readings per insert_many",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000),
            registry=self.registry,
        )
        self.store_seconds = Histogram(
            "ingest_store_seconds", "insert_many latency", registry=self.registry
        )
        self.queue_depth = Gauge(
            "ingest_queue_depth", "Messages waiting to be stored", registry=self.registry
        )
        self.connected = Gauge(
            "ingest_mqtt_connected", "1 while connected to the broker", registry=self.registry
        )
        self.reconnects = Counter(
            "ingest_mqtt_reconnects", "Broker connections lost", registry=self.registry
        )
        for reason in REASONS:
            self.dropped.labels(reason=reason)
        # Looked up once: labels() costs a lock and a tuple on every message otherwise.
        self.received_by_kind = {
            kind.name: self.received.labels(kind=kind.name) for kind in CONSUMED
        }
        self._warned_at: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}
        # --- alerts (ingest/alerts.py, ingest/webhooks.py)
        self.alerts_raised = Counter(
            "ingest_alerts_raised", "Alerts raised, by kind", ["kind"], registry=self.registry
        )
        self.alerts_cleared = Counter(
            "ingest_alerts_cleared", "Alerts cleared by their rule", registry=self.registry
        )
        self.alert_work_dropped = Counter(
            "ingest_alert_work_dropped",
            "Raise/clear work dropped (alert queue full); retried at the next reading",
            registry=self.registry,
        )
        self.alert_evaluations_skipped = Counter(
            "ingest_alert_evaluations_skipped",
            "Readings not evaluated against rules (held while rules loaded, buffer full)",
            registry=self.registry,
        )
        self.anomalies = Counter(
            "ingest_anomalous_readings", "Readings flagged anomalous", registry=self.registry
        )
        self.webhooks = Counter(
            "ingest_webhook_deliveries",
            "Webhook attempts (delivered, failed) and deliveries (exhausted, dropped, "
            "owner_full, blocked)",
            ["outcome"],
            registry=self.registry,
        )

        # --- device logs (ingest/logs.py); drops are in ingest_messages_dropped
        self.logs_stored = Counter(
            "ingest_log_lines_stored", "Device log lines stored", registry=self.registry
        )
        self.log_queue_depth = Gauge(
            "ingest_log_queue_depth", "Log messages waiting to be stored", registry=self.registry
        )

    def drop(self, reason: Reason, device_id: str | None) -> None:
        """Count a dropped message and warn about it, at most once a minute per reason."""
        self.dropped.labels(reason=reason).inc()
        now = time.monotonic()
        if now - self._warned_at.get(reason, -60.0) < 60.0:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        suppressed = self._suppressed.pop(reason, 0)
        self._warned_at[reason] = now
        # Never the payload: it may carry secrets.
        logger.warning(
            "dropped a message: %s (device %s; %d more like it since the last warning)",
            reason,
            device_id or "?",
            suppressed,
        )

    def dropped_count(self, reason: Reason) -> float:
        return (
            self.registry.get_sample_value("ingest_messages_dropped_total", {"reason": reason})
            or 0.0
        )

    def stored_count(self) -> float:
        return self.registry.get_sample_value("ingest_readings_stored_total") or 0.0

    def webhook_outcome(self, outcome: str) -> None:
        self.webhooks.labels(outcome=outcome).inc()

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        """One sample's current value (0 when never incremented)."""
        return self.registry.get_sample_value(name, labels or {}) or 0.0
