"""Mutations of the alerts domain."""

from __future__ import annotations

from typing import Any

import strawberry

from graph.alerts.types import (
    Alert,
    AlertRule,
    CreateAlertRuleInput,
    CreateNoDataRuleInput,
    NotificationWebhook,
    SetNotificationWebhookPayload,
    UpdateAlertRuleInput,
)
from graph.context import Info
from models.alerts import RuleKind, Severity
from services import alert_rules, alerts, webhooks
from services.rule_kinds import RuleFields

# The contract's names of rule settings that Python names otherwise (services.rule_kinds).
_SERVICE_NAMES = {"min": "min_value", "max": "max_value"}


def _given(input: UpdateAlertRuleInput) -> dict[str, Any]:
    """The fields the client set (null included), by the service's names."""
    return {
        _SERVICE_NAMES.get(name, name): value
        for name, value in vars(input).items()
        if value is not strawberry.UNSET
    }


@strawberry.type
class AlertMutation:
    @strawberry.mutation(description="A threshold rule: raise when a reading leaves [min, max].")
    async def create_alert_rule(self, info: Info, input: CreateAlertRuleInput) -> AlertRule:
        viewer = await info.context.require_user()
        fields = RuleFields(
            kind=RuleKind.THRESHOLD,
            metric=input.metric,
            min_value=input.min,
            max_value=input.max,
            severity=input.severity or Severity.WARNING,
            hysteresis=input.hysteresis or 0.0,
            duration_seconds=input.duration_seconds or 0,
        )
        rule = await alert_rules.create_rule(
            viewer,
            input.device_id,
            fields,
            settings=info.context.settings,
            redis=info.context.redis,
        )
        return AlertRule.from_document(rule)

    @strawberry.mutation(description="A no-data rule: raise when the device is silent too long.")
    async def create_no_data_rule(self, info: Info, input: CreateNoDataRuleInput) -> AlertRule:
        viewer = await info.context.require_user()
        fields = RuleFields(
            kind=RuleKind.NO_DATA,
            no_data_seconds=input.seconds,
            severity=input.severity or Severity.WARNING,
        )
        rule = await alert_rules.create_rule(
            viewer,
            input.device_id,
            fields,
            settings=info.context.settings,
            redis=info.context.redis,
        )
        return AlertRule.from_document(rule)

    @strawberry.mutation(
        description="Change some of a rule's settings; disabling clears its alert."
    )
    async def update_alert_rule(
        self, info: Info, id: strawberry.ID, input: UpdateAlertRuleInput
    ) -> AlertRule:
        viewer = await info.context.require_user()
        rule = await alert_rules.update_rule(viewer, id, _given(input), redis=info.context.redis)
        return AlertRule.from_document(rule)

    @strawberry.mutation
    async def enable_alert_rule(self, info: Info, id: strawberry.ID) -> AlertRule:
        viewer = await info.context.require_user()
        rule = await alert_rules.update_rule(
            viewer, id, {"enabled": True}, redis=info.context.redis
        )
        return AlertRule.from_document(rule)

    @strawberry.mutation(description="Stop evaluating a rule; its open alert is cleared.")
    async def disable_alert_rule(self, info: Info, id: strawberry.ID) -> AlertRule:
        viewer = await info.context.require_user()
        rule = await alert_rules.update_rule(
            viewer, id, {"enabled": False}, redis=info.context.redis
        )
        return AlertRule.from_document(rule)

    @strawberry.mutation(description="Delete a rule; its open alert is cleared, not deleted.")
    async def delete_alert_rule(self, info: Info, id: strawberry.ID) -> bool:
        viewer = await info.context.require_user()
        await alert_rules.delete_rule(viewer, id, redis=info.context.redis)
        return True

    @strawberry.mutation(description="ACTIVE -> ACKNOWLEDGED (idempotent).")
    async def acknowledge_alert(self, info: Info, id: strawberry.ID) -> Alert:
        viewer = await info.context.require_user()
        alert = await alerts.acknowledge_alert(viewer, id, redis=info.context.redis)
        return Alert.from_document(alert)

    @strawberry.mutation(description="Clear an open alert by hand (idempotent).")
    async def clear_alert(self, info: Info, id: strawberry.ID) -> Alert:
        viewer = await info.context.require_user()
        alert = await alerts.clear_alert(viewer, id, redis=info.context.redis)
        return Alert.from_document(alert)

    @strawberry.mutation(
        description="POST the caller's raised alerts to this http(s) URL, signed; "
        "replaces any previous webhook and secret."
    )
    async def set_notification_webhook(self, info: Info, url: str) -> SetNotificationWebhookPayload:
        viewer = await info.context.require_user()
        webhook, secret = await webhooks.set_webhook(viewer, url, settings=info.context.settings)
        return SetNotificationWebhookPayload(
            webhook=NotificationWebhook.from_document(webhook), secret=secret
        )

    @strawberry.mutation(description="Stop POSTing alerts; false when no webhook was set.")
    async def remove_notification_webhook(self, info: Info) -> bool:
        viewer = await info.context.require_user()
        return await webhooks.remove_webhook(viewer)
