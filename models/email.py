"""E-mail: single-use tokens, the outbox, notification preferences, alert reminders."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

import pymongo
from beanie import Document, Indexed, PydanticObjectId
from pydantic import Field

from models.accounts import utcnow
from models.alerts import Severity


class TokenPurpose(StrEnum):
    VERIFY_EMAIL = "verify_email"
    RESET_PASSWORD = "reset_password"  # noqa: S105 - a purpose, not a password


class EmailToken(Document):
    """A link's token, stored as its SHA-256 only; consumed (deleted) by its one use."""

    token_hash: Annotated[str, Indexed(unique=True)]
    purpose: TokenPurpose
    user_id: PydanticObjectId
    # The address a verification token confirms: a changed address needs a new token.
    email: str
    expires_at: datetime
    created_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "email_tokens"
        indexes = [
            pymongo.IndexModel([("user_id", pymongo.ASCENDING), ("purpose", pymongo.ASCENDING)]),
            # Expired tokens go by themselves (a TTL index on real MongoDB); a consume
            # refuses them anyway, whether or not they are gone yet.
            pymongo.IndexModel([("expires_at", pymongo.ASCENDING)], expireAfterSeconds=0),
        ]


class MailState(StrEnum):
    PENDING = "pending"  # waiting for its next attempt (or being sent under a lease)
    SENT = "sent"  # accepted by the SMTP server, or logged in development
    DROPPED = "dropped"  # nothing to send (an unknown address's reset; no SMTP in production)
    DEAD = "dead"  # out of attempts


class MailKind(StrEnum):
    VERIFY_EMAIL = "verify_email"
    # Queued as a request for an address; the sender makes the mail if a user has it.
    PASSWORD_RESET = "password_reset"  # noqa: S105 - a mail kind, not a password
    ALERT = "alert"
    ALERT_REMINDER = "alert_reminder"


class OutboxMail(Document):
    """One e-mail to send. Claimed by moving `next_attempt_at` forward (a lease), so any
    number of API processes send it once; `text` (it may hold a token) is removed once
    the mail is sent or given up, and the entry itself after `EXPIRE_AFTER`."""

    kind: MailKind
    to: str
    subject: str | None = None
    text: str | None = None
    # The one link of the mail: what development logs instead of sending.
    link: str | None = None
    # Idempotence: the same alert (reminder) is queued once, however often a writer retries.
    key: str | None = None
    state: MailState = MailState.PENDING
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow)
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
    last_error: str | None = None
    # Set when the mail leaves PENDING: a TTL index deletes the entry then.
    expire_at: datetime | None = None

    class Settings:
        name = "email_outbox"
        keep_nulls = False  # a missing key stays out of the sparse unique index
        indexes = [
            # The claim: the earliest due pending mail.
            pymongo.IndexModel(
                [("state", pymongo.ASCENDING), ("next_attempt_at", pymongo.ASCENDING)]
            ),
            pymongo.IndexModel([("key", pymongo.ASCENDING)], unique=True, sparse=True),
            pymongo.IndexModel([("expire_at", pymongo.ASCENDING)], expireAfterSeconds=0),
        ]


class NotificationPreferences(Document):
    """One user's alert e-mail preferences (none stored: no alert e-mails)."""

    user_id: Annotated[PydanticObjectId, Indexed(unique=True)]
    email: bool = False
    min_severity: Severity | None = None  # None: every severity
    device_ids: list[PydanticObjectId] | None = None  # None: every device of the user
    remind_after_minutes: int | None = None  # None: no reminders
    updated_at: datetime = Field(default_factory=utcnow)

    class Settings:
        name = "notification_preferences"


class AlertReminder(Document):
    """One member's reminders of one alert mailed to it with reminders on: when the next
    is due. The reminder check claims due ones by moving `next_due_at` forward, so each
    goes out once. Its id is `services.notifications.reminder_id(alert, user)`, so a
    retried raise finds it present; reminders stored before organizations have the
    alert's id as theirs and no `alert_id`."""

    alert_id: PydanticObjectId | None = None
    user_id: PydanticObjectId
    next_due_at: datetime
    last_mailed_at: datetime
    reminders: int = 0

    class Settings:
        name = "alert_reminders"
        indexes = [pymongo.IndexModel([("next_due_at", pymongo.ASCENDING)])]

    @property
    def of_alert(self) -> PydanticObjectId | None:
        """The alert's id (a reminder stored before organizations has it as its own)."""
        return self.alert_id or self.id
