"""Alert e-mails: each user's preferences, the mail of a raised alert, and reminders.

The ingest worker that raises an alert queues its e-mail in the outbox
(`queue_alert_email`, ingest/alert_raiser.py), right after the alert is stored: the
e-mail exists as soon as the alert does, whichever API process sends it. With
reminders on, an `AlertReminder` records when the next one is due; each API process
runs `send_due_reminders` periodically and claims due ones atomically, so every
reminder goes out once. Preferences are read again at each reminder.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any, Final

from beanie import PydanticObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from models.accounts import User, utcnow
from models.alerts import Alert, AlertState, Severity
from models.devices import Device
from models.email import AlertReminder, MailKind, NotificationPreferences
from services import access, mail_messages, outbox
from services.errors import BadInput, NotFound
from services.validation import parse_id

logger = logging.getLogger(__name__)

RANK: Final = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}
MAX_DEVICE_IDS: Final = 1000
MAX_REMIND_AFTER_MINUTES: Final = 7 * 24 * 60
# A claimed reminder is held this long in case its process dies before rescheduling it.
REMINDER_LEASE: Final = timedelta(minutes=5)
# Reminders one check sends at most (the next check continues).
REMINDERS_PER_CHECK: Final = 500


async def set_preferences(
    viewer: User,
    *,
    email: bool,
    min_severity: Severity | None,
    device_ids: list[str] | None,
    remind_after_minutes: int | None,
) -> NotificationPreferences:
    """Store the viewer's alert e-mail preferences; NotFound for a device it may not see."""
    if remind_after_minutes is not None and not (
        1 <= remind_after_minutes <= MAX_REMIND_AFTER_MINUTES
    ):
        raise BadInput("remindAfterMinutes", f"must be 1 to {MAX_REMIND_AFTER_MINUTES}")
    devices: list[PydanticObjectId] | None = None
    if device_ids is not None:
        if len(device_ids) > MAX_DEVICE_IDS:
            raise BadInput("deviceIds", f"at most {MAX_DEVICE_IDS}")
        wanted = list(
            dict.fromkeys(
                PydanticObjectId(parse_id(i, kind="device", field="deviceIds")) for i in device_ids
            )
        )
        found = {
            raw["_id"]: raw["owner_id"]
            async for raw in Device.get_pymongo_collection().find(
                {"_id": {"$in": wanted}}, {"owner_id": 1}
            )
        }
        for device_id in wanted:
            if device_id not in found:
                raise NotFound("Device")
            access.require(viewer, "read", "device", found[device_id])
        devices = wanted
    preferences = NotificationPreferences(
        user_id=viewer.id,
        email=email,
        min_severity=min_severity,
        device_ids=devices,
        remind_after_minutes=remind_after_minutes,
    )
    fields = preferences.model_dump(exclude={"id", "revision_id"})
    await NotificationPreferences.get_pymongo_collection().update_one(
        {"user_id": viewer.id}, {"$set": fields}, upsert=True
    )
    return preferences


async def _recipient(alert: Alert) -> tuple[NotificationPreferences, User] | None:
    """The owner's preferences and account when this alert is to be mailed to it: the
    user whose personal organization the device is in (a personal organization's id is
    its user's). Alerts of a shared organization are not mailed yet (its members'
    preferences would each apply; docs/alerts.md)."""
    owner_id = alert.owner_id or alert.organization_id
    preferences = await NotificationPreferences.find_one(
        NotificationPreferences.user_id == owner_id
    )
    if preferences is None or not preferences.email:
        return None
    minimum = preferences.min_severity or Severity.INFO
    if RANK[alert.severity] < RANK[minimum]:
        return None
    if preferences.device_ids is not None and alert.device_id not in preferences.device_ids:
        return None
    user = await User.get(owner_id)
    if user is None or not user.email_verified:
        return None
    return preferences, user


async def _device_name(device_id: PydanticObjectId) -> str:
    raw = await Device.get_pymongo_collection().find_one({"_id": device_id}, {"name": 1})
    return str(raw["name"]) if raw is not None else str(device_id)


async def queue_alert_email(alert: Alert, *, base_url: str) -> bool:
    """Queue the e-mail of a just raised alert if its owner's preferences ask for it
    (and the reminder record); idempotent, so a writer may retry. True when queued."""
    recipient = await _recipient(alert)
    if recipient is None:
        return False
    preferences, user = recipient
    message = mail_messages.alert(base_url, alert, device_name=await _device_name(alert.device_id))
    queued = await outbox.enqueue(MailKind.ALERT, user.email, message, key=f"alert:{alert.id}")
    if preferences.remind_after_minutes is not None:
        now = utcnow()
        # Present already: a retry of the same alert.
        with contextlib.suppress(DuplicateKeyError):
            await AlertReminder(
                id=alert.id,
                user_id=user.id,
                next_due_at=now + timedelta(minutes=preferences.remind_after_minutes),
                last_mailed_at=now,
            ).insert()
    return queued


async def _claim_reminder(now: datetime) -> AlertReminder | None:
    raw: dict[str, Any] | None = await AlertReminder.get_pymongo_collection().find_one_and_update(
        {"next_due_at": {"$lte": now}},
        {"$set": {"next_due_at": now + REMINDER_LEASE}},
        sort=[("next_due_at", ASCENDING)],
        return_document=ReturnDocument.AFTER,
    )
    return AlertReminder.model_validate(raw) if raw is not None else None


async def send_due_reminders(*, base_url: str, now: datetime | None = None) -> int:
    """Queue a reminder for each alert whose reminder is due and that is still ACTIVE;
    alerts acknowledged or cleared (or no longer wanted by the preferences) stop there.
    Returns how many reminders were queued."""
    now = now or utcnow()
    queued = 0
    collection = AlertReminder.get_pymongo_collection()
    for _ in range(REMINDERS_PER_CHECK):
        reminder = await _claim_reminder(now)
        if reminder is None:
            break
        alert = await Alert.get(reminder.id)
        recipient = await _recipient(alert) if alert is not None else None
        if alert is None or alert.state != AlertState.ACTIVE or recipient is None:
            await collection.delete_one({"_id": reminder.id})
            continue
        preferences, user = recipient
        if preferences.remind_after_minutes is None:
            await collection.delete_one({"_id": reminder.id})
            continue
        number = reminder.reminders + 1
        message = mail_messages.alert(
            base_url, alert, device_name=await _device_name(alert.device_id), reminder=number
        )
        if await outbox.enqueue(
            MailKind.ALERT_REMINDER, user.email, message, key=f"reminder:{alert.id}:{number}"
        ):
            queued += 1
        await collection.update_one(
            {"_id": reminder.id},
            {
                "$set": {
                    "next_due_at": now + timedelta(minutes=preferences.remind_after_minutes),
                    "last_mailed_at": now,
                    "reminders": number,
                }
            },
        )
    return queued
