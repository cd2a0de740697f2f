"""Where a mail goes: an SMTP server (aiosmtplib), the log (development without
SMTP_HOST: the link only), or nowhere (production without SMTP_HOST).

A transport raises MailFailed; `permanent` says that trying again cannot help.
"""

from __future__ import annotations

import asyncio
import logging
from email.message import EmailMessage
from email.utils import make_msgid
from typing import Literal, Protocol

from core.settings import ApiSettings
from models.email import MailKind

logger = logging.getLogger(__name__)


class MailFailed(Exception):
    """One attempt failed; `permanent`: the server refused the mail itself (5xx)."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


class Transport(Protocol):
    # "sent": delivered or logged; "dropped": deliberately not sent.
    async def deliver(
        self, *, kind: MailKind, to: str, subject: str, text: str, link: str | None
    ) -> Literal["sent", "dropped"]: ...


class SmtpTransport:
    """One SMTP connection per mail, all of it under SMTP_TIMEOUT_SECONDS."""

    def __init__(self, settings: ApiSettings) -> None:
        self._settings = settings

    async def deliver(
        self, *, kind: MailKind, to: str, subject: str, text: str, link: str | None
    ) -> Literal["sent", "dropped"]:
        import aiosmtplib  # only the API's sender needs it

        settings = self._settings
        message = EmailMessage()
        message["From"] = settings.email_sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain="iotplatform")
        message.set_content(text)
        # No login unless both are set (compose passes unset ones as empty strings).
        username = settings.smtp_username or None
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        if username is None or not password:
            username = password = None
        timeout = settings.smtp_timeout_seconds
        try:
            # The overall deadline: aiosmtplib's own timeout applies per step only.
            async with asyncio.timeout(timeout):
                await aiosmtplib.send(
                    message,
                    hostname=settings.smtp_host,
                    port=settings.smtp_port,
                    username=username,
                    password=password,
                    use_tls=settings.smtp_tls == "tls",
                    start_tls=settings.smtp_tls == "starttls",
                    timeout=timeout,
                )
        except TimeoutError as err:
            raise MailFailed(f"no answer within {timeout:g} s") from err
        except aiosmtplib.SMTPResponseException as err:
            # 5xx: the server refused this mail (an address it rejects, ...); 4xx: later.
            # A refused login is the operator's to fix: retried until the attempts end.
            auth = isinstance(err, aiosmtplib.SMTPAuthenticationError)
            raise MailFailed(
                f"SMTP {err.code}: {err.message}"[:500], permanent=err.code >= 500 and not auth
            ) from err
        except aiosmtplib.SMTPRecipientsRefused as err:
            # One recipient per mail: its refusal is the mail's.
            codes = [r.code for r in err.recipients]
            reasons = "; ".join(f"{r.code} {r.message}" for r in err.recipients)
            raise MailFailed(
                f"SMTP {reasons}"[:500], permanent=bool(codes) and min(codes) >= 500
            ) from err
        except (aiosmtplib.SMTPException, OSError) as err:
            raise MailFailed(f"{type(err).__name__}: {err}"[:500]) from err
        return "sent"


class LogTransport:
    """Development and test without SMTP_HOST: the link goes to the log, nothing else
    (never an address, never a body)."""

    async def deliver(
        self, *, kind: MailKind, to: str, subject: str, text: str, link: str | None
    ) -> Literal["sent", "dropped"]:
        logger.info("e-mail (%s) not sent, no SMTP_HOST; its link: %s", kind.value, link)
        return "sent"


class DropTransport:
    """Production without SMTP_HOST: nothing is sent (the API warned at start)."""

    async def deliver(
        self, *, kind: MailKind, to: str, subject: str, text: str, link: str | None
    ) -> Literal["sent", "dropped"]:
        return "dropped"


def transport_for(settings: ApiSettings) -> Transport:
    """SMTP when SMTP_HOST is set; else the log (development, test) or nothing (production)."""
    if settings.smtp_host:
        return SmtpTransport(settings)
    if settings.environment == "production":
        logger.warning(
            "SMTP_HOST is not set: no e-mail is sent (verification, password reset, alerts)"
        )
        return DropTransport()
    return LogTransport()
