"""GraphQL types of alert rules, alerts and notification webhooks."""

from __future__ import annotations

from datetime import datetime
from typing import Self

import strawberry

from core.events import AlertEvent
from live.sharing import shareable
from models.alerts import Alert as AlertDocument
from models.alerts import AlertKind, AlertState, RuleKind, Severity
from models.alerts import AlertRule as AlertRuleDocument
from models.alerts import NotificationWebhook as WebhookDocument

# The documents' enums are the GraphQL enums: one list of values, not two to keep equal.
strawberry.enum(Severity)
strawberry.enum(AlertState)
strawberry.enum(AlertKind, description="What raised an alert.")
strawberry.enum(RuleKind, name="AlertRuleKind")


@strawberry.type(
    description="A rule on one device: a metric's [min, max] (THRESHOLD), or silence (NO_DATA)."
)
class AlertRule:
    id: strawberry.ID
    device_id: strawberry.ID
    kind: RuleKind
    metric: str | None = strawberry.field(description="Null for a NO_DATA rule.")
    min: float | None
    max: float | None
    hysteresis: float = strawberry.field(
        description="An open alert clears once the value is back inside by this margin."
    )
    duration_seconds: int = strawberry.field(
        description="Raise only once the value has stayed out of range this long."
    )
    no_data_seconds: int | None = strawberry.field(
        description="A NO_DATA rule raises when the device sent nothing this long."
    )
    severity: Severity
    enabled: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_document(cls, rule: AlertRuleDocument) -> Self:
        return cls(
            id=strawberry.ID(str(rule.id)),
            device_id=strawberry.ID(str(rule.device_id)),
            kind=rule.kind,
            metric=rule.metric,
            min=rule.min_value,
            max=rule.max_value,
            hysteresis=rule.hysteresis,
            duration_seconds=rule.duration_seconds,
            no_data_seconds=rule.no_data_seconds,
            severity=rule.severity,
            enabled=rule.enabled,
            created_at=rule.created_at,
            updated_at=rule.updated_at,
        )


@shareable
@strawberry.type(description="ACTIVE -> ACKNOWLEDGED -> CLEARED; one open per rule and device.")
class Alert:
    id: strawberry.ID
    device_id: strawberry.ID
    rule_id: strawberry.ID | None = strawberry.field(description="Null for ANOMALY alerts.")
    kind: AlertKind
    metric: str | None
    value: float | None = strawberry.field(description="The reading that raised it, if any.")
    message: str
    severity: Severity
    state: AlertState
    raised_at: datetime
    acknowledged_at: datetime | None
    cleared_at: datetime | None

    @classmethod
    def from_document(cls, alert: AlertDocument) -> Self:
        return cls(
            id=strawberry.ID(str(alert.id)),
            device_id=strawberry.ID(str(alert.device_id)),
            rule_id=strawberry.ID(str(alert.rule_id)) if alert.rule_id else None,
            kind=alert.kind,
            metric=alert.metric,
            value=alert.value,
            message=alert.message,
            severity=alert.severity,
            state=alert.state,
            raised_at=alert.raised_at,
            acknowledged_at=alert.acknowledged_at,
            cleared_at=alert.cleared_at,
        )

    @classmethod
    def from_event(cls, event: AlertEvent) -> Self:
        return cls(
            id=strawberry.ID(event.alert_id),
            device_id=strawberry.ID(event.device_id),
            rule_id=strawberry.ID(event.rule_id) if event.rule_id else None,
            kind=AlertKind(event.kind),
            metric=event.metric,
            value=event.value,
            message=event.message,
            severity=Severity(event.severity),
            state=AlertState(event.state),
            raised_at=event.raised_at,
            acknowledged_at=event.acknowledged_at,
            cleared_at=event.cleared_at,
        )


@strawberry.type(description="Where raised alerts are POSTed; the secret is never shown again.")
class NotificationWebhook:
    url: str
    created_at: datetime

    @classmethod
    def from_document(cls, webhook: WebhookDocument) -> Self:
        return cls(url=webhook.url, created_at=webhook.created_at)


@strawberry.type
class SetNotificationWebhookPayload:
    webhook: NotificationWebhook
    secret: str = strawberry.field(
        description="Verifies X-Iot-Signature (HMAC-SHA256); shown this once."
    )


@strawberry.input
class CreateAlertRuleInput:
    device_id: strawberry.ID
    metric: str
    min: float | None = None
    max: float | None = None
    severity: Severity | None = strawberry.field(default=None, description="Default WARNING.")
    hysteresis: float | None = strawberry.field(default=None, description="Default 0.")
    duration_seconds: int | None = strawberry.field(default=None, description="Default 0.")


@strawberry.input
class CreateNoDataRuleInput:
    device_id: strawberry.ID
    seconds: int = strawberry.field(description="Silence, in seconds, that raises the alert.")
    severity: Severity | None = strawberry.field(default=None, description="Default WARNING.")


@strawberry.input(description="Only the fields given change; min or max null removes that bound.")
class UpdateAlertRuleInput:
    metric: str | None = strawberry.UNSET
    min: float | None = strawberry.UNSET
    max: float | None = strawberry.UNSET
    hysteresis: float | None = strawberry.UNSET
    duration_seconds: int | None = strawberry.UNSET
    no_data_seconds: int | None = strawberry.UNSET
    severity: Severity | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET
