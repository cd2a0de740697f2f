"""The worker's alert writer: raise and clear in MongoDB, announce on Redis, notify.

The engine (ingest/alerts.py) decides on the hot path and hands work over with
`submit`, which never waits; one task here performs the work in order, retrying
MongoDB until it answers. The sparse unique index on open_key decides whether a raise
opens an alert, so this holds across any number of workers.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

from bson import ObjectId
from pymongo.errors import PyMongoError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.backoff import RETRY, Backoff
from core.settings import WorkerSettings
from ingest.stats import IngestStats
from ingest.thresholds import RuleSpec, RuleState
from ingest.webhooks import WebhookDelivery, WebhookSender
from models.alerts import Alert, AlertKind, AlertRule, NotificationWebhook, Severity
from services.alerts import NewAlert, alert_event, close_open_alert, open_alert
from services.alerts import publish_alert_event as publish
from services.notifications import queue_alert_email
from services.webhooks import alert_payload, webhook_secret

logger = logging.getLogger(__name__)

ANOMALY_KEY_PREFIX = "alerts:anomaly:"


@dataclass(frozen=True, slots=True)
class AlertWork:
    """One decision of the engine: raise or clear a rule's alert, or raise an anomaly."""

    action: Literal["raise", "clear", "anomaly"]
    device_id: str
    owner_id: str
    rule: RuleSpec | None = None
    # The engine's state of the rule, set back when the work cannot be queued.
    state: RuleState | None = None
    metric: str | None = None
    value: float | None = None
    message: str = ""


class AlertRaiser:
    """A bounded queue of AlertWork and the task that performs it."""

    def __init__(
        self,
        settings: WorkerSettings,
        redis: Redis,
        stats: IngestStats,
        webhooks: WebhookSender,
        *,
        origin: str,
    ) -> None:
        self._settings = settings
        self._redis = redis
        self._stats = stats
        self._webhooks = webhooks
        self._origin = origin
        self._queue: asyncio.Queue[AlertWork] = asyncio.Queue(settings.alert_queue_size)
        self._busy = 0

    @property
    def pending(self) -> int:
        """Work queued or in progress (0: all decided so far is in MongoDB)."""
        return self._queue.qsize() + self._busy

    def submit(self, work: AlertWork) -> bool:
        """Queue work without waiting; False (dropped, counted) when the queue is full."""
        try:
            self._queue.put_nowait(work)
        except asyncio.QueueFull:
            self._stats.alert_work_dropped.inc()
            return False
        return True

    async def run(self) -> None:
        """Perform queued work, in order, until cancelled."""
        while True:
            work = await self._queue.get()
            self._busy = 1
            try:
                if work.action == "clear":
                    await self._clear(work)
                else:
                    await self._raise(work)
            finally:
                self._busy = 0

    async def _retrying[T](self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        backoff: Backoff | None = None  # made on a failure only
        while True:
            try:
                return await call()
            except PyMongoError as err:
                backoff = backoff or Backoff(RETRY)
                logger.warning("%s failed (%s); retrying in %.1f s", what, err, backoff.delay)
                await backoff.sleep()

    async def _clear(self, work: AlertWork) -> None:
        if work.rule is None:
            return
        key = work.rule.open_key
        alert = await self._retrying("alert clear", lambda: close_open_alert(key, by="rule"))
        if alert is not None:
            self._stats.alerts_cleared.inc()
            await publish(self._redis, alert_event(alert, "cleared", origin=self._origin))

    async def _raise(self, work: AlertWork) -> None:
        rule = work.rule
        if rule is None:
            kind = AlertKind.ANOMALY
            severity = Severity(self._settings.anomaly_alert_severity)
            if not await self._claim_anomaly(work.device_id):
                return
        else:
            kind = AlertKind(rule.kind)
            severity = Severity(rule.severity)
            # A rule deleted or disabled a moment ago may still be cached by the engine.
            if not await self._retrying("alert rule check", lambda: _enabled(rule.rule_id)):
                return
        new = NewAlert(
            owner_id=work.owner_id,
            device_id=work.device_id,
            rule_id=rule.rule_id if rule is not None else None,
            kind=kind,
            metric=work.metric,
            value=work.value,
            message=work.message,
            severity=severity,
            open_key=rule.open_key if rule is not None else None,
        )
        alert = await self._retrying("alert raise", lambda: open_alert(new))
        if alert is None:
            return  # one is open already (raised by another worker, or before a restart)
        self._stats.alerts_raised.labels(kind=kind.value).inc()
        await publish(self._redis, alert_event(alert, "raised", origin=self._origin))
        await self._retrying("webhook lookup", lambda: self._notify(alert))
        # Its e-mail, per the owner's preferences: queued in the outbox (idempotent, so
        # retried like the rest), sent by an API process (services/notifications.py).
        base_url = self._settings.public_base_url
        await self._retrying("alert e-mail", lambda: queue_alert_email(alert, base_url=base_url))

    async def _claim_anomaly(self, device_id: str) -> bool:
        """At most one anomaly alert per device and interval, across workers (Redis SET NX);
        without Redis, each worker's own limit (in the engine) still applies."""
        interval = self._settings.anomaly_alert_interval_seconds
        if interval <= 0:
            return True
        try:
            claimed = await self._redis.set(
                ANOMALY_KEY_PREFIX + device_id,
                self._origin,
                nx=True,
                px=max(int(interval * 1000), 1),
            )
        except RedisError as err:
            logger.warning("anomaly alert limit not shared (%s)", err)
            return True
        return bool(claimed)

    async def _notify(self, alert: Alert) -> None:
        # The webhook of the alert's organization (set by a user for its personal one).
        hook = await NotificationWebhook.get_pymongo_collection().find_one(
            {"organization_id": alert.organization_id}
        )
        if hook is None:
            return
        delivery_id = uuid.uuid4().hex
        secret = webhook_secret(self._settings, str(hook["user_id"]), hook["secret_nonce"])
        self._webhooks.submit(
            WebhookDelivery(
                delivery_id=delivery_id,
                owner=str(alert.organization_id),
                url=hook["url"],
                secret=secret,
                body=alert_payload(alert, delivery_id=delivery_id),
            )
        )


async def _enabled(rule_id: str) -> bool:
    raw = await AlertRule.get_pymongo_collection().find_one(
        {"_id": ObjectId(rule_id), "enabled": True}, {"_id": 1}
    )
    return raw is not None
