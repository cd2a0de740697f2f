"""Queries of the alerts domain."""

from __future__ import annotations

import strawberry

from graph.alerts.types import Alert, AlertRule, NotificationWebhook
from graph.context import Info
from graph.pagination import Connection
from models.alerts import AlertState
from services import alert_rules, alerts, webhooks


@strawberry.type
class AlertQuery:
    @strawberry.field(
        description="The caller's alert rules (an ADMIN's: all), of one device or all, "
        "newest first."
    )
    async def alert_rules(
        self, info: Info, device_id: strawberry.ID | None = None
    ) -> list[AlertRule]:
        viewer = await info.context.require_user()
        rules = await alert_rules.list_rules(viewer, device_id)
        return [AlertRule.from_document(rule) for rule in rules]

    @strawberry.field
    async def alert_rule(self, info: Info, id: strawberry.ID) -> AlertRule:
        viewer = await info.context.require_user()
        return AlertRule.from_document(await alert_rules.get_rule(viewer, id))

    @strawberry.field(description="Alerts of the caller's devices (an ADMIN's: all), newest first.")
    async def alerts(
        self,
        info: Info,
        state: AlertState | None = None,
        device_id: strawberry.ID | None = None,
        first: int | None = None,
        after: str | None = None,
    ) -> Connection[Alert]:
        viewer = await info.context.require_user()
        size = info.context.page_size(first)
        page = await alerts.list_alerts(
            viewer, state=state, device_id=device_id, first=size, after=after
        )
        return Connection[Alert].from_page(page, Alert.from_document)

    @strawberry.field
    async def alert(self, info: Info, id: strawberry.ID) -> Alert:
        viewer = await info.context.require_user()
        return Alert.from_document(await alerts.get_alert(viewer, id))

    @strawberry.field(description="The caller's own alert webhook, if set.")
    async def notification_webhook(self, info: Info) -> NotificationWebhook | None:
        viewer = await info.context.require_user()
        webhook = await webhooks.get_webhook(viewer)
        return NotificationWebhook.from_document(webhook) if webhook else None
