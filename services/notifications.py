"""Alert e-mails: each user's preferences, the mail of a raised alert, and reminders.

An alert is mailed to every member of its device's organization whose own preferences
ask for it (a personal organization's only member is its user). The ingest worker that
raises an alert queues its e-mails in the outbox (`queue_alert_email`,
ingest/alert_raiser.py) right after the alert is stored: they exist as soon as the alert
does, whichever API process sends them. With reminders on, an `AlertReminder` per member
records when its next one is due; each API process runs `send_due_reminders`
periodically and claims due ones atomically, so every reminder goes out once.
Preferences and membership are read again at each reminder.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from datetime import datetime, timedelta
from typing import Any, Final

from beanie import PydanticObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from models.accounts import MemberRole, User, utcnow
from models.alerts import Alert, AlertState, Severity
from models.devices import Device
from models.email import AlertReminder, MailKind, NotificationPreferences
from models.organizations import Organization
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
            raw["_id"]: raw.get("organization_id", raw["owner_id"])
            async for raw in Device.get_pymongo_collection().find(
                {"_id": {"$in": wanted}}, {"owner_id": 1, "organization_id": 1}
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


def reminder_id(alert_id: PydanticObjectId, user_id: PydanticObjectId) -> PydanticObjectId:
    """The id of `user_id`'s reminders of `alert_id`: derived from both, so the insert of
    a retried raise is a duplicate key, as it is for the mail's outbox key."""
    digest = hashlib.sha256(alert_id.binary + user_id.binary).digest()
    return PydanticObjectId(digest[:12])


async def _members(organization_id: PydanticObjectId) -> dict[PydanticObjectId, MemberRole]:
    """{user id: role} of the organization's members; an organization not stored (a
    personal one its migration has not made yet) is its user's alone."""
    raw = await Organization.get_pymongo_collection().find_one(
        {"_id": organization_id}, {"members": 1}
    )
    if raw is None:
        return {organization_id: MemberRole.OWNER}
    return {m["user_id"]: MemberRole(m["role"]) for m in raw.get("members", ())}


def _wants(alert: Alert, preferences: NotificationPreferences) -> bool:
    if not preferences.email:
        return False
    minimum = preferences.min_severity or Severity.INFO
    if RANK[alert.severity] < RANK[minimum]:
        return False
    return preferences.device_ids is None or alert.device_id in preferences.device_ids


async def _recipients(
    alert: Alert, only: PydanticObjectId | None = None
) -> list[tuple[NotificationPreferences, User]]:
    """Every member of the alert's organization (or just `only`) who may read the alert,
    has a verified address and whose preferences ask for this alert: each member's own
    preferences apply. A removed member is no longer one, so gets nothing more."""
    members = await _members(alert.organization_id)
    if only is not None:
        members = {only: members[only]} if only in members else {}
    if not members:
        return []
    wanted = {
        p.user_id: p
        async for p in NotificationPreferences.find(
            {"user_id": {"$in": list(members)}, "email": True}
        )
        if _wants(alert, p)
    }
    if not wanted:
        return []
    found = []
    async for user in User.find({"_id": {"$in": list(wanted)}}):
        preferences = wanted[user.id]
        # The access decision on the role this organization gives the member (a
        # platform ADMIN is mailed only for the organizations it is a member of).
        user.set_memberships({str(alert.organization_id): members[preferences.user_id]})
        if user.email_verified and access.may(user, "read", "alert", alert.organization_id):
            found.append((preferences, user))
    return sorted(found, key=lambda pair: str(pair[0].user_id))


async def _device_name(device_id: PydanticObjectId) -> str:
    raw = await Device.get_pymongo_collection().find_one({"_id": device_id}, {"name": 1})
    return str(raw["name"]) if raw is not None else str(device_id)


async def queue_alert_email(alert: Alert, *, base_url: str) -> int:
    """Queue the e-mail of a just raised alert to each member whose preferences ask for
    it (and their reminder records); idempotent, so a writer may retry. Returns how many
    mails were newly queued."""
    recipients = await _recipients(alert)
    if not recipients:
        return 0
    if alert.id is None:
        raise ValueError("the alert must be stored first")
    message = mail_messages.alert(base_url, alert, device_name=await _device_name(alert.device_id))
    queued = 0
    for preferences, user in recipients:
        key = f"alert:{alert.id}:{preferences.user_id}"
        if await outbox.enqueue(MailKind.ALERT, user.email, message, key=key):
            queued += 1
        if preferences.remind_after_minutes is not None:
            now = utcnow()
            # Present already: a retry of the same alert.
            with contextlib.suppress(DuplicateKeyError):
                await AlertReminder(
                    id=reminder_id(alert.id, preferences.user_id),
                    alert_id=alert.id,
                    user_id=preferences.user_id,
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
        alert = await Alert.get(reminder.of_alert)
        # Acknowledged, cleared or gone: no reminder, and no recipient to look up.
        if alert is None or alert.state != AlertState.ACTIVE:
            await collection.delete_one({"_id": reminder.id})
            continue
        recipients = await _recipients(alert, only=reminder.user_id)
        if not recipients:
            await collection.delete_one({"_id": reminder.id})
            continue
        [(preferences, user)] = recipients
        if preferences.remind_after_minutes is None:
            await collection.delete_one({"_id": reminder.id})
            continue
        number = reminder.reminders + 1
        message = mail_messages.alert(
            base_url, alert, device_name=await _device_name(alert.device_id), reminder=number
        )
        key = f"reminder:{alert.id}:{user.id}:{number}"
        if await outbox.enqueue(MailKind.ALERT_REMINDER, user.email, message, key=key):
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
