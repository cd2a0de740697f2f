"""Mutations of the notifications domain."""

from __future__ import annotations

import strawberry

from graph.context import Info
from graph.notifications.types import NotificationPreferences, NotificationPreferencesInput
from services import notifications


@strawberry.type
class NotificationMutation:
    @strawberry.mutation(
        description=(
            "Alert e-mails to the caller's verified address: alerts at or above minSeverity, "
            "of the listed devices (null: all), and a reminder every remindAfterMinutes "
            "while an alert stays ACTIVE (null: none)."
        )
    )
    async def set_notification_preferences(
        self, info: Info, input: NotificationPreferencesInput
    ) -> NotificationPreferences:
        viewer = await info.context.require_user()
        preferences = await notifications.set_preferences(
            viewer,
            email=input.email,
            min_severity=input.min_severity,
            device_ids=None if input.device_ids is None else [str(i) for i in input.device_ids],
            remind_after_minutes=input.remind_after_minutes,
        )
        return NotificationPreferences.from_document(preferences)
