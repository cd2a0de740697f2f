"""Shared steps of the e-mail tests: verified users, reset tokens, the outbox."""

from __future__ import annotations

from typing import Any

from models.email import OutboxMail
from tests.client import Api
from tests.contract import op
from tests.factories import Session, register
from tests.integration.alerts.conftest import eventually
from tests.smtp import SmtpServer

RESET_SUBJECT = "Reset your password"
VERIFY_SUBJECT = "Confirm your e-mail address"


async def verified_user(api: Api, smtp: SmtpServer, email: str | None = None) -> Session:
    """A registered user whose address is verified through its e-mail's link."""
    session = await register(api, email)
    [mail] = await smtp.wait_for(session.email, subject=VERIFY_SUBJECT)
    result = await api.execute(op("VerifyEmail"), {"token": mail.token("verify")})
    assert result.data["verifyEmail"]["emailVerified"] is True
    return session


async def reset_token(api: Api, smtp: SmtpServer, email: str) -> str:
    """Ask for a reset of `email` and return the token of the e-mail that follows."""
    before = len(smtp.to(email, RESET_SUBJECT))
    result = await api.execute(op("RequestPasswordReset"), {"email": email})
    assert result.data == {"requestPasswordReset": True}
    mails = await smtp.wait_for(email, before + 1, subject=RESET_SUBJECT)
    return mails[-1].token("reset")


async def settled_mails(**query: Any) -> list[OutboxMail]:
    """Outbox entries matching `query`, once none of them is pending any more."""

    async def done() -> list[OutboxMail] | None:
        mails = await OutboxMail.find(query).to_list()
        return mails if mails and all(m.state != "pending" for m in mails) else None

    result: list[OutboxMail] = await eventually(done, what=f"outbox entries {query} settled")
    return result
