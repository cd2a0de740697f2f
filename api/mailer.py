"""What the API process runs for e-mail: the outbox sender and the reminder check.

Both are background tasks of the lifespan. Requests and the ingest worker only write
to MongoDB (services/outbox.py), so a slow or dead SMTP server delays mail and nothing
else: each attempt has SMTP_TIMEOUT_SECONDS, a failed one waits its backoff in the
outbox (not here), and the sender goes on with other mail.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pymongo.errors import PyMongoError

from core.backoff import RETRY, Backoff
from core.settings import ApiSettings
from models.email import MailKind, MailState, OutboxMail
from services import notifications, outbox, password_reset
from services.mail_transport import MailFailed, Transport, transport_for

logger = logging.getLogger(__name__)


class Mailer:
    """Sends due outbox mail through `transport`, one attempt at a time."""

    def __init__(self, settings: ApiSettings, transport: Transport) -> None:
        self._settings = settings
        self._transport = transport
        self._wakeup = asyncio.Event()

    async def run(self) -> None:
        """Claim and send due mail until cancelled; sleep while none is due."""
        outbox.register_wakeup(self._wakeup)
        backoff: Backoff | None = None
        try:
            while True:
                try:
                    mail = await outbox.claim_due(self._settings)
                except PyMongoError as err:
                    backoff = backoff or Backoff(RETRY)
                    logger.warning("outbox claim failed (%s); again in %.1f s", err, backoff.delay)
                    await backoff.sleep()
                    continue
                backoff = None
                if mail is None:
                    await self._idle()
                    continue
                try:
                    await self.attempt(mail)
                except PyMongoError as err:
                    # The claim's lease runs out and some sender tries this mail again.
                    logger.warning("e-mail %s: outbox update failed (%s)", mail.id, err)
                except Exception:
                    # Whatever went wrong with one mail, the others still go out; this one
                    # is tried again once its lease runs out (attempts stay bounded).
                    logger.exception("e-mail %s: attempt failed unexpectedly", mail.id)
        finally:
            outbox.unregister_wakeup(self._wakeup)

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), self._settings.email_outbox_poll_seconds)
        self._wakeup.clear()

    async def attempt(self, mail: OutboxMail) -> None:
        """One attempt at one claimed mail, settled or rescheduled in the outbox."""
        if mail.attempts > self._settings.email_max_attempts:
            # Claimed again after attempts that ended without a verdict (a crash mid-send).
            await outbox.settle(mail, MailState.DEAD, error="out of attempts")
            return
        if mail.subject is None or mail.text is None:
            # A request entry: made into a mail once, here; stored, so retries send it.
            message = (
                await password_reset.prepare_mail(mail, self._settings)
                if mail.kind is MailKind.PASSWORD_RESET
                else None
            )
            if message is None:
                await outbox.settle(mail, MailState.DROPPED)
                return
            await outbox.prepared(mail, message)
        try:
            outcome = await self._transport.deliver(
                kind=mail.kind,
                to=mail.to,
                subject=mail.subject or "",
                text=mail.text or "",
                link=mail.link,
            )
        except MailFailed as err:
            await outbox.failed(mail, self._settings, err.reason, permanent=err.permanent)
            return
        await outbox.settle(mail, MailState.SENT if outcome == "sent" else MailState.DROPPED)


async def check_reminders(settings: ApiSettings) -> None:
    """Queue due alert reminders every EMAIL_REMINDER_CHECK_SECONDS until cancelled."""
    while True:
        await asyncio.sleep(settings.email_reminder_check_seconds)
        try:
            queued = await notifications.send_due_reminders(base_url=settings.public_base_url)
        except PyMongoError as err:
            logger.warning("alert reminder check failed (%s); trying again later", err)
            continue
        except Exception:
            logger.exception("alert reminder check failed unexpectedly; trying again later")
            continue
        if queued:
            logger.info("%d alert reminder(s) queued", queued)


@asynccontextmanager
async def open_mailer(settings: ApiSettings) -> AsyncIterator[Mailer]:
    """Run the outbox sender and the reminder check until the block ends."""
    mailer = Mailer(settings, transport_for(settings))
    if settings.environment == "production" and "localhost" in settings.public_base_url:
        logger.warning(
            "PUBLIC_BASE_URL is %s: links in e-mails will not work for their readers",
            settings.public_base_url,
        )
    tasks = [
        asyncio.create_task(mailer.run(), name="email-outbox"),
        asyncio.create_task(check_reminders(settings), name="email-reminders"),
    ]
    try:
        yield mailer
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
