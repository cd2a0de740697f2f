"""GraphQL types of notification preferences."""

from __future__ import annotations

from typing import Self

import strawberry

from models.alerts import Severity
from models.email import NotificationPreferences as PreferencesDocument


@strawberry.type
class NotificationPreferences:
    email: bool = strawberry.field(description="Alert e-mails to the verified address.")
    min_severity: Severity | None = strawberry.field(description="null: every severity.")
    device_ids: list[strawberry.ID] | None = strawberry.field(description="null: every device.")
    remind_after_minutes: int | None = strawberry.field(
        description="Remind this often while an alert stays ACTIVE (null: no reminder)."
    )

    @classmethod
    def from_document(cls, preferences: PreferencesDocument) -> Self:
        device_ids = preferences.device_ids
        return cls(
            email=preferences.email,
            min_severity=preferences.min_severity,
            device_ids=None if device_ids is None else [strawberry.ID(str(i)) for i in device_ids],
            remind_after_minutes=preferences.remind_after_minutes,
        )


@strawberry.input
class NotificationPreferencesInput:
    email: bool
    min_severity: Severity | None = None
    device_ids: list[strawberry.ID] | None = None
    remind_after_minutes: int | None = None
