"""The e-mail outbox in MongoDB: queue a mail, claim the next one due, settle it.

Writers (a request, the ingest worker) only insert; the API processes' senders
(api/mailer.py) claim with one atomic find_one_and_update that moves the mail's
`next_attempt_at` a lease ahead and counts the attempt, so concurrent senders never
take the same mail, and one that died mid-send leaves it to be retried after the lease.
A failed attempt waits exponentially longer (core/backoff.py), up to EMAIL_MAX_ATTEMPTS.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timedelta
from typing import Any, Final

from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from core.backoff import Backoff, BackoffPolicy
from core.settings import ApiSettings
from models.accounts import utcnow
from models.email import MailKind, MailState, OutboxMail
from services.mail_messages import Message

logger = logging.getLogger(__name__)

# Sent or given-up entries are kept this long (what was sent, for an operator).
EXPIRE_AFTER: Final = timedelta(days=7)

# Senders of this process, woken when it queues a mail (others find it by polling).
_wakeups: set[asyncio.Event] = set()


def register_wakeup(event: asyncio.Event) -> None:
    _wakeups.add(event)


def unregister_wakeup(event: asyncio.Event) -> None:
    _wakeups.discard(event)


def _wake() -> None:
    for event in _wakeups:
        event.set()


async def enqueue(
    kind: MailKind, to: str, message: Message | None = None, *, key: str | None = None
) -> bool:
    """Queue a mail (`message` None: a password reset request, made by the sender);
    False when a mail of the same `key` is queued already."""
    mail = OutboxMail(kind=kind, to=to, key=key)
    if message is not None:
        mail.subject, mail.text, mail.link = message.subject, message.text, message.link
    try:
        await mail.insert()
    except DuplicateKeyError:
        return False
    _wake()
    return True


def lease(settings: ApiSettings) -> timedelta:
    """How long a claim holds a mail: longer than any attempt can take."""
    return timedelta(seconds=settings.smtp_timeout_seconds * 2 + 30)


async def claim_due(settings: ApiSettings, *, now: datetime | None = None) -> OutboxMail | None:
    """The earliest pending mail due now, claimed for one attempt; None when none is due."""
    now = now or utcnow()
    raw: dict[str, Any] | None = await OutboxMail.get_pymongo_collection().find_one_and_update(
        {"state": MailState.PENDING.value, "next_attempt_at": {"$lte": now}},
        {"$set": {"next_attempt_at": now + lease(settings)}, "$inc": {"attempts": 1}},
        sort=[("next_attempt_at", ASCENDING)],
        return_document=ReturnDocument.AFTER,
    )
    return OutboxMail.model_validate(raw) if raw is not None else None


async def prepared(mail: OutboxMail, message: Message) -> None:
    """Store the mail made for a request entry, so that a retry sends the same one."""
    mail.subject, mail.text, mail.link = message.subject, message.text, message.link
    await OutboxMail.get_pymongo_collection().update_one(
        {"_id": mail.id},
        {"$set": {"subject": message.subject, "text": message.text, "link": message.link}},
    )


async def settle(mail: OutboxMail, state: MailState, *, error: str | None = None) -> None:
    """Leave PENDING for good: the body goes (it may hold a token), the entry expires."""
    now = utcnow()
    changes: dict[str, Any] = {"state": state.value, "expire_at": now + EXPIRE_AFTER}
    if state is MailState.SENT:
        changes["sent_at"] = now
    if error is not None:
        changes["last_error"] = error
    await OutboxMail.get_pymongo_collection().update_one(
        {"_id": mail.id}, {"$set": changes, "$unset": {"text": ""}}
    )


def retry_delay(settings: ApiSettings, attempts: int) -> float:
    """The wait after the `attempts`-th failed attempt (1: the first wait)."""
    backoff = Backoff(
        BackoffPolicy(
            first=settings.email_retry_first_seconds, maximum=settings.email_retry_max_seconds
        )
    )
    for _ in range(max(attempts, 1) - 1):
        backoff.next()
    return backoff.delay


async def failed(mail: OutboxMail, settings: ApiSettings, reason: str, *, permanent: bool) -> None:
    """Count a failed attempt: try again after the backoff, or give up (DEAD)."""
    if permanent or mail.attempts >= settings.email_max_attempts:
        logger.error(
            "e-mail %s (%s) given up after %d attempt(s): %s",
            mail.id,
            mail.kind.value,
            mail.attempts,
            reason,
        )
        await settle(mail, MailState.DEAD, error=reason)
        return
    delay = retry_delay(settings, mail.attempts)
    logger.warning(
        "e-mail %s (%s) attempt %d failed (%s); next in %.1f s",
        mail.id,
        mail.kind.value,
        mail.attempts,
        reason,
        delay,
    )
    await OutboxMail.get_pymongo_collection().update_one(
        {"_id": mail.id},
        {"$set": {"next_attempt_at": utcnow() + timedelta(seconds=delay), "last_error": reason}},
    )
